package signin

import (
	"net/netip"
	"time"

	"github.com/switchboard/switchboard/db"
)

// Policy is how hard sign-in failures are throttled. A zero field takes
// DefaultPolicy's value.
type Policy struct {
	// MaxFailures attempts for one operator from one address (IPv6: one
	// /64) refuse that (operator, address) pair for LockFor. An attempt
	// counts from when it begins until it succeeds; attempts are
	// forgotten Window after the last one.
	MaxFailures int
	LockFor     time.Duration
	Window      time.Duration
	// MaxAddressFailures failures from one source address within
	// AddressWindow refuse further attempts from it until the window ends,
	// whichever operators they name: that stops one address from guessing
	// across many operators. Kept in each node's memory.
	MaxAddressFailures int
	AddressWindow      time.Duration
	// Past DelayAfter attempts for one operator from all addresses within
	// Window, each further attempt makes the next one from an address not
	// known for the operator wait: DelayBase, doubling with each attempt,
	// up to DelayMax. Attempts that come early are refused unchecked.
	DelayAfter int
	DelayBase  time.Duration
	DelayMax   time.Duration
	// KnownFor is how long an address stays known for an operator, and
	// exempt from the delay, after the operator signed in from it.
	KnownFor time.Duration
}

// DefaultPolicy: 5 attempts from one address in 15 minutes lock that
// (operator, address) pair for 15 minutes; 20 failures from one address in
// 15 minutes refuse the address; past 5 attempts for one operator in 15
// minutes, addresses it has not signed in from in the last 30 days wait 1
// s, 2 s, 4 s, ... up to 30 s between attempts.
var DefaultPolicy = Policy{
	MaxFailures: 5, LockFor: 15 * time.Minute, Window: 15 * time.Minute,
	MaxAddressFailures: 20, AddressWindow: 15 * time.Minute,
	DelayAfter: 5, DelayBase: time.Second, DelayMax: 30 * time.Second,
	KnownFor: 30 * 24 * time.Hour,
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy
	pick := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	pickD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	pick(&p.MaxFailures, d.MaxFailures)
	pick(&p.MaxAddressFailures, d.MaxAddressFailures)
	pick(&p.DelayAfter, d.DelayAfter)
	pickD(&p.LockFor, d.LockFor)
	pickD(&p.Window, d.Window)
	pickD(&p.AddressWindow, d.AddressWindow)
	pickD(&p.DelayBase, d.DelayBase)
	pickD(&p.DelayMax, d.DelayMax)
	pickD(&p.KnownFor, d.KnownFor)
	return p
}

func (p Policy) limits() db.SigninLimits {
	return db.SigninLimits{
		MaxFailures: p.MaxFailures, Window: p.Window, LockFor: p.LockFor,
		DelayAfter: p.DelayAfter, DelayBase: p.DelayBase, DelayMax: p.DelayMax, KnownFor: p.KnownFor,
	}
}

// addressKey buckets an address: IPv6 by its /64, which one site or one
// attacker usually holds whole, so that rotating addresses within it gains
// nothing.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// beginAddress counts an attempt from ip before it is checked and reports
// whether the address may try; a success takes it back (endAddress).
func (s *Service) beginAddress(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	key := addressKey(ip)
	a := s.addresses[key]
	if a == nil || now.Sub(a.since) > s.policy.AddressWindow {
		if a == nil {
			makeRoom(s.addresses, func(v *addressFailures) bool { return now.Sub(v.since) > s.policy.AddressWindow })
		}
		a = &addressFailures{since: now}
		s.addresses[key] = a
	}
	if a.count >= s.policy.MaxAddressFailures {
		return false
	}
	a.count++
	return true
}

func (s *Service) endAddress(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.addresses[addressKey(ip)]; a != nil && a.count > 0 {
		a.count--
	}
}

type addressFailures struct {
	count int
	since time.Time
}

// A ghost is a name that is no operator. Its attempts are throttled as an
// operator's would be (pair lock, progressive delay), in memory, so that a
// refusal says nothing about whether the name exists.
type ghostPair struct {
	attempts          int
	last, lockedUntil time.Time
}

type ghostName struct {
	attempts          int
	last, delayedTill time.Time
}

func ghostKey(name string) string {
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// ghostBegin is db.BeginSignin for a ghost.
func (s *Service) ghostBegin(name, ip string) db.SigninGate {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, now := s.policy, s.now()
	name = ghostKey(name)
	pk := name + "\x00" + addressKey(ip)
	pair := s.ghostPairs[pk]
	if pair != nil && pair.lockedUntil.After(now) {
		return db.SigninGate{Locked: true}
	}
	if pair == nil || now.Sub(pair.last) > p.Window || !pair.lockedUntil.IsZero() {
		if pair == nil {
			makeRoom(s.ghostPairs, func(v *ghostPair) bool { return now.Sub(v.last) > p.Window && !v.lockedUntil.After(now) })
		}
		pair = &ghostPair{}
		s.ghostPairs[pk] = pair
	}
	if pair.attempts >= p.MaxFailures {
		return db.SigninGate{Locked: true}
	}
	g := s.ghostNames[name]
	if g == nil {
		makeRoom(s.ghostNames, func(v *ghostName) bool { return now.Sub(v.last) > p.Window && !v.delayedTill.After(now) })
		g = &ghostName{}
		s.ghostNames[name] = g
	}
	if now.Sub(g.last) > p.Window {
		g.attempts = 0
	}
	if g.delayedTill.After(now) {
		return db.SigninGate{Wait: g.delayedTill.Sub(now)}
	}
	pair.attempts++
	pair.last = now
	g.attempts++
	g.last = now
	if d := p.limits().Delay(g.attempts); d > 0 && g.delayedTill.Before(now.Add(d)) {
		g.delayedTill = now.Add(d)
	}
	return db.SigninGate{OK: true}
}

// ghostFailed is db.SigninFailed for a ghost.
func (s *Service) ghostFailed(name, ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pair := s.ghostPairs[ghostKey(name)+"\x00"+addressKey(ip)]
	if pair != nil && pair.attempts >= s.policy.MaxFailures && !pair.lockedUntil.After(s.now()) {
		pair.lockedUntil = s.now().Add(s.policy.LockFor)
	}
}

// maxTracked bounds each in-memory table; when one is full, entries that
// no longer count are dropped, then any one.
const maxTracked = 100_000

func makeRoom[V any](table map[string]V, stale func(V) bool) {
	if len(table) < maxTracked {
		return
	}
	for k, v := range table {
		if stale(v) {
			delete(table, k)
		}
	}
	for k := range table {
		if len(table) < maxTracked {
			break
		}
		delete(table, k)
	}
}
