package event

import (
	"strings"
	"testing"
)

// The console's records keep their texts, and whatever an operator typed
// stays on one line of the log.
func TestConsoleEvents(t *testing.T) {
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{KeyAdded("root", "0123abcd", "office"), "Operator root added gateway key 0123abcd (office)"},
		{KeyLabelled("root", "0123abcd", "new\nlabel"), `Operator root labelled gateway key 0123abcd "new\nlabel"`},
		{OperatorEnabled("root", "disabled", "bob"), "Operator root disabled operator bob"},
		{ConfigChanged("root", "CMPI 60 s → 30 s"), "Operator root changed CMPI 60 s → 30 s"},
		{PasswordChanged("bob"), "Operator bob changed their password"},
		{RecoveryCodeUsed("bob", "192.0.2.1", 9), "Operator bob used a recovery code from 192.0.2.1 instead of a TOTP code (9 left)"},
	} {
		if tc.e.Message != tc.want {
			t.Errorf("message %q, want %q", tc.e.Message, tc.want)
		}
	}
	e := OperatorAdded("root", "evil\r\n29-Jun-22, 16:11:20, Gateway stopped", "admin")
	if strings.ContainsAny(e.Message, "\r\n") || e.Operator != "root" || e.Kind != KindConfig {
		t.Fatalf("a typed name broke the record: %+v", e)
	}
}
