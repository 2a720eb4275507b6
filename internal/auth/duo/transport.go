package duo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/duosecurity/duo_api_golang/authapi"
)

// maxAnswer bounds what is read of one answer: Duo's are a few hundred
// bytes, and the library reads bodies whole.
const maxAnswer = 1 << 20

// errNoNews is call's report that a long-polled call reached its deadline
// after the request was sent: Duo was holding it, waiting for news.
var errNoNews = errors.New("duo: long poll ended without news")

// ErrRateLimited is wrapped (with ErrUnavailable) when Duo answers HTTP 429.
// Callers that fail open on outages must not on this: anyone with a
// password can make Duo rate-limit a user by signing in over and over.
var ErrRateLimited = errors.New("rate limited by Duo (HTTP 429)")

// call runs fn, which makes one Auth API call, against a copy of c.api
// whose HTTP client is bound to ctx and c.timeout. That is how the library,
// which takes no context, is made to honour one: the request is cancelled
// when ctx is, and no goroutine outlives call.
//
// It returns fn's error classified: ctx's own error when the caller's ctx
// ended; errNoNews for a long poll (longPoll) that timed out after the
// request was written; otherwise ErrUnavailable with the cause.
func (c *Client) call(ctx context.Context, op string, longPoll bool, fn func(*authapi.AuthApi) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("duo %s: %w", op, err)
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var wrote atomic.Bool
	callCtx = httptrace.WithClientTrace(callCtx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})

	api := *c.api
	api.SetCustomHTTPClient(&http.Client{
		Transport: &callTransport{base: c.base, ctx: callCtx},
		// Duo does not redirect; following one would send the signed
		// request's answer from somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	})
	err := fn(&api)
	switch {
	case err == nil:
		return nil
	case longPoll && wrote.Load() && errors.Is(callCtx.Err(), context.DeadlineExceeded) && !errors.Is(ctx.Err(), context.Canceled):
		return errNoNews
	case ctx.Err() != nil:
		return fmt.Errorf("duo %s: %w", op, ctx.Err())
	}
	return fmt.Errorf("duo %s: %w: %w", op, ErrUnavailable, err)
}

// callTransport binds each request to one call's context, and turns the
// answers that mean "Duo is not serving" into errors before the library
// sees them: the library cannot see status codes otherwise (authapi drops
// them), and on 429 it would retry with sleeps of up to a minute in all
// that no context can cut short.
type callTransport struct {
	base http.RoundTripper
	ctx  context.Context
}

// statusError is an HTTP answer that means Duo is not serving.
type statusError struct{ code int }

func (e *statusError) Error() string {
	return fmt.Sprintf("Duo answered HTTP %d %s", e.code, http.StatusText(e.code))
}

func (e *statusError) Unwrap() error {
	if e.code == http.StatusTooManyRequests {
		return ErrRateLimited
	}
	return nil
}

// RoundTrip sends req under t.ctx.
func (t *callTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req.WithContext(t.ctx))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &statusError{code: resp.StatusCode}
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxAnswer), resp.Body}
	return resp, nil
}
