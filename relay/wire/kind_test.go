package wire

import "testing"

func TestServiceKind(t *testing.T) {
	for _, c := range []struct{ name, kind, want string }{
		{"vnc", "", KindVNC}, {"VNC-2", "", KindVNC}, {"ssh", "", KindSSH}, {"sshd", "", KindSSH},
		{"desk", KindVNC, KindVNC}, {"shell", KindSSH, KindSSH}, {"vnc", KindSSH, KindSSH},
		{"echo", "", ""}, {"vnc", "rdp", ""}, {"xvnc", "", ""},
	} {
		if got := ServiceKind(c.name, c.kind); got != c.want {
			t.Errorf("ServiceKind(%q, %q) = %q, want %q", c.name, c.kind, got, c.want)
		}
	}
	h := Hello{Role: RoleClient, KeyID: "ab", Proof: []byte{1}, Name: "pc", Services: []Service{{Name: "desk", Kind: "rdp"}}}
	if err := h.Check(); err == nil {
		t.Error("a Hello with service kind rdp was taken")
	}
	h.Services[0].Kind = KindVNC
	if err := h.Check(); err != nil {
		t.Errorf("a Hello with service kind vnc: %v", err)
	}
}
