package password

import (
	"errors"
	"strings"
	"testing"
)

func TestHashAndCheck(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	if err := Check(h, "correct horse battery"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if err := Check(h, "correct horse batterY"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: err = %v", err)
	}
	h2, _ := Hash("correct horse battery")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, bad := range []string{"", "$bcrypt$x", "$argon2id$v=19$m=1,t=1,p=1$!!$!!"} {
		if err := Check(bad, "x"); err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("Check(%q) = %v, want a format error", bad, err)
		}
	}
}

func TestHashCode(t *testing.T) {
	h, err := HashCode("abcd-efgh-ijkl-mnop")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=4096,t=1,p=1$") {
		t.Fatalf("code hash %q is not the light PHC argon2id string", h)
	}
	if err := Check(h, "abcd-efgh-ijkl-mnop"); err != nil {
		t.Fatalf("right code refused: %v", err)
	}
	if err := Check(h, "abcd-efgh-ijkl-mnoq"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong code: err = %v", err)
	}
}
