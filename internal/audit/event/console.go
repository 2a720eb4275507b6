package event

import "fmt"

// The console's records of what an operator changed. by is the operator
// who did it; every value is escaped (Safe, OneLine for lists of changes)
// so that whatever was typed stays one line.

// ConfigChanged reports settings an operator changed in the console;
// changes is the list shown to them ("CMPI 60 s → 30 s; ...").
func ConfigChanged(by, changes string) Event {
	by = Safe(by)
	e := newEvent(KindConfig, OneLine(fmt.Sprintf("Operator %s changed %s", by, changes)))
	e.Operator = by
	return e
}

// TwoFactorChanged reports the 2FA tab saved; what never holds a secret.
func TwoFactorChanged(by, what string) Event {
	by = Safe(by)
	e := newEvent(KindConfig, OneLine(fmt.Sprintf("Operator %s changed 2FA settings: %s", by, what)))
	e.Operator = by
	return e
}

// KeyAdded reports a gateway key added in the console.
func KeyAdded(by, keyID, label string) Event {
	by, keyID, label = Safe(by), Safe(keyID), Safe(label)
	e := newEvent(KindConfig, fmt.Sprintf("Operator %s added gateway key %s (%s)", by, keyID, label))
	e.Operator = by
	return e
}

// KeyRemoved reports a gateway key removed in the console.
func KeyRemoved(by, keyID string) Event {
	by, keyID = Safe(by), Safe(keyID)
	e := newEvent(KindConfig, fmt.Sprintf("Operator %s removed gateway key %s", by, keyID))
	e.Operator = by
	return e
}

// KeyLabelled reports a gateway key's label changed.
func KeyLabelled(by, keyID, label string) Event {
	by, keyID = Safe(by), Safe(keyID)
	// %q escapes whatever would break the line, as Safe does elsewhere.
	e := newEvent(KindConfig, OneLine(fmt.Sprintf("Operator %s labelled gateway key %s %q", by, keyID, label)))
	e.Operator = by
	return e
}

// OperatorAdded reports an operator account made in the console.
func OperatorAdded(by, name, role string) Event {
	by, name, role = Safe(by), Safe(name), Safe(role)
	e := newEvent(KindConfig, fmt.Sprintf("Operator %s added operator %s with role %s", by, name, role))
	e.Operator = by
	return e
}

// OperatorChanged reports an operator account's settings changed; what
// lists the changes.
func OperatorChanged(by, name, what string) Event {
	by, name = Safe(by), Safe(name)
	e := newEvent(KindConfig, OneLine(fmt.Sprintf("Operator %s changed operator %s: %s", by, name, what)))
	e.Operator = by
	return e
}

// OperatorEnabled reports an operator account disabled or enabled again
// (state is "disabled" or "enabled").
func OperatorEnabled(by, state, name string) Event {
	by, state, name = Safe(by), Safe(state), Safe(name)
	e := newEvent(KindConfig, fmt.Sprintf("Operator %s %s operator %s", by, state, name))
	e.Operator = by
	return e
}

// OperatorDeleted reports an operator account deleted.
func OperatorDeleted(by, name string) Event {
	by, name = Safe(by), Safe(name)
	e := newEvent(KindConfig, fmt.Sprintf("Operator %s deleted operator %s", by, name))
	e.Operator = by
	return e
}

// CertificateInstalled reports a certificate uploaded in the console.
func CertificateInstalled(by, fingerprint string) Event {
	by, fingerprint = Safe(by), Safe(fingerprint)
	e := newEvent(KindConfig, fmt.Sprintf("Operator %s installed a new certificate (SHA-256 %s)", by, fingerprint))
	e.Operator = by
	return e
}

// PasswordChanged reports an operator who changed their own password.
func PasswordChanged(operator string) Event {
	operator = Safe(operator)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s changed their password", operator))
	e.Operator = operator
	return e
}

// ClientForgotten reports an offline Client removed from the known ones.
func ClientForgotten(by, client string) Event {
	by, client = Safe(by), Safe(client)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s forgot Client %s", by, client))
	e.Operator, e.Client = by, client
	return e
}

// RecoveryCodeUsed reports a sign-in with a TOTP recovery code; left is
// how many the operator has still.
func RecoveryCodeUsed(operator, ip string, left int) Event {
	operator, ip = Safe(operator), Safe(ip)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s used a recovery code from %s instead of a TOTP code (%d left)", operator, ip, left))
	e.Operator, e.PublicIP = operator, ip
	return e
}

// RecoveryCodesMade reports an operator's new set of recovery codes.
func RecoveryCodesMade(operator, ip string, n int) Event {
	operator, ip = Safe(operator), Safe(ip)
	e := newEvent(KindOperator, fmt.Sprintf("Operator %s generated %d new recovery codes from %s", operator, n, ip))
	e.Operator, e.PublicIP = operator, ip
	return e
}

// HostKeyRefused reports a browser terminal refused because the Client's
// SSH server showed another host key than the one pinned for it.
func HostKeyRefused(operator, client, service, fingerprint, pinned, publicIP string) Event {
	operator, client, service, fingerprint, pinned, publicIP = Safe(operator), Safe(client), Safe(service), Safe(fingerprint), Safe(pinned), Safe(publicIP)
	e := newEvent(KindSecurity, fmt.Sprintf("SSH host key of Client %s service %s changed (now %s, pinned %s). Refused the terminal of Control console:%s from %s",
		client, service, fingerprint, pinned, operator, publicIP))
	e.Operator, e.Control, e.Client, e.PublicIP = operator, "console:"+operator, client, publicIP
	e.Check = CheckRemote
	return e
}

// HostKeyCleared reports an admin clearing a pinned SSH host key.
func HostKeyCleared(by, client, service string) Event {
	by, client, service = Safe(by), Safe(client), Safe(service)
	e := newEvent(KindConfig, fmt.Sprintf("Operator %s cleared the pinned SSH host key of Client %s service %s", by, client, service))
	e.Operator, e.Client = by, client
	return e
}

// RemoteRefused reports a browser desktop or terminal an operator may not
// open (no permission for that Client).
func RemoteRefused(operator, client, service, publicIP string) Event {
	operator, client, service, publicIP = Safe(operator), Safe(client), Safe(service), Safe(publicIP)
	e := newEvent(KindSecurity, fmt.Sprintf("Operator %s may not reach Client %s service %s. Refused the browser session from %s", operator, client, service, publicIP))
	e.Operator, e.Client, e.PublicIP = operator, client, publicIP
	e.Check = CheckRemote
	return e
}
