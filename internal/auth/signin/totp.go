package signin

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: what every authenticator app understands.
const (
	totpPeriod = 30
	totpDigits = otp.DigitsSix
	// totpSkew accepts the code of one step either side of now, for clocks
	// a little apart and codes typed as they roll over.
	totpSkew = 1
)

// Enrolment is a TOTP secret being set up, shown as a QR code and as text.
type Enrolment struct {
	Secret string // base32
	URL    string // otpauth:// URL the QR code encodes
}

// NewEnrolment makes a fresh secret for operator.
func NewEnrolment(issuer, operator string) (Enrolment, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: operator, Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return Enrolment{}, fmt.Errorf("signin: new TOTP secret: %w", err)
	}
	return Enrolment{Secret: key.Secret(), URL: key.URL()}, nil
}

// QRCode renders the enrolment's URL as a PNG image of size×size pixels.
func (e Enrolment) QRCode(size int) ([]byte, error) {
	key, err := otp.NewKeyFromURL(e.URL)
	if err != nil {
		return nil, fmt.Errorf("signin: TOTP URL: %w", err)
	}
	img, err := key.Image(size, size)
	if err != nil {
		return nil, fmt.Errorf("signin: QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("signin: QR code: %w", err)
	}
	return buf.Bytes(), nil
}

// totpStep finds the time step whose code is code, within the skew window
// around now; ok is false when no step matches. Every candidate is
// compared, in constant time, so timing tells nothing about which was close.
func totpStep(secret, code string, now time.Time) (step int64, ok bool) {
	code = strings.TrimSpace(code)
	if len(code) != totpDigits.Length() {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		s := cur + d
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*totpPeriod, 0), totp.ValidateOpts{
			Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && !ok {
			step, ok = s, true
		}
	}
	return step, ok
}

// EnrolmentFromURL restores an enrolment kept as its otpauth URL.
func EnrolmentFromURL(url string) (Enrolment, error) {
	key, err := otp.NewKeyFromURL(url)
	if err != nil {
		return Enrolment{}, fmt.Errorf("signin: TOTP URL: %w", err)
	}
	return Enrolment{Secret: key.Secret(), URL: url}, nil
}

// Check verifies the first code of an enrolment and returns its time step,
// which the caller marks as used.
func (e Enrolment) Check(code string, now time.Time) (int64, bool) {
	return totpStep(e.Secret, code, now)
}
