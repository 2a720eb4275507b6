package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientInstallSystemd installs the Client as a systemd service without
// touching the machine and without a running systemd: the install runs in a
// private mount namespace (unshare) where /etc/systemd/system and /run are
// empty tmpfs folders, /run/systemd/system marks systemd as the init system,
// and a systemctl script on PATH records what it is asked to do.
func TestClientInstallSystemd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a private mount namespace; CI runs as root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	if _, err := os.Stat("/etc/systemd/system"); err != nil {
		t.Fatalf("the test mounts a tmpfs over /etc/systemd/system, which must exist: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(dir, "systemctl.log")
	fake := "#!/bin/sh\necho \"$*\" >> " + calls + "\ncase \"$1\" in is-active) echo active;; esac\nexit 0\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "etc", "client.conf")
	sb := binary(t)
	script := `set -e
mount -t tmpfs tmpfs /etc/systemd/system
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system
"$SB" client install --gateway https://gw.example.com:3085 --key ` + testKey + ` --service ssh=127.0.0.1:22 --config-path "$CONF"
echo ---unit
cat /etc/systemd/system/switchboard-client.service
echo ---status
"$SB" client status --config-path "$CONF"
echo ---uninstall
"$SB" client uninstall --config-path "$CONF"
echo ---left
ls /etc/systemd/system
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "SB="+sb, "CONF="+conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install script: %v\n%s", err, out)
	}
	text := string(out)
	unit := between(text, "---unit\n", "---status")
	for _, want := range []string{
		"ExecStart=" + sb + ` "client" "--config" "` + conf + `"`, // exact binary and settings file
		"Restart=always",
		"RestartSec=5",
		"NoNewPrivileges=yes",
		"After=network-online.target",
		"WantedBy=multi-user.target",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if !strings.Contains(between(text, "---status\n", "---uninstall"), "switchboard-client: running") {
		t.Errorf("status output:\n%s", text)
	}
	if left := strings.TrimSpace(between(text, "---left\n", "")); left != "" {
		t.Errorf("uninstall left %q behind", left)
	}
	log, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"enable switchboard-client.service", "daemon-reload", "start switchboard-client.service",
		"stop switchboard-client.service", "disable switchboard-client.service"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("systemctl was not asked to %q; calls:\n%s", want, log)
		}
	}
	// The config file was written during install (0600, holding the key)
	// and removed by uninstall.
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf("config file still there after uninstall: %v", err)
	}
}

// TestClientInstallWritesPrivateConfig checks the file install writes, which
// the service then runs with.
func TestClientInstallWritesPrivateConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "client.conf")
	cf := clientFlags{gf: gatewayFlags{gateway: "gw:443", key: testKey}, services: listFlag{"ssh=127.0.0.1:22", "vnc=127.0.0.1:5900"}}
	if err := writeClientConfig(path, cf); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600: the file holds the gateway key", fi.Mode().Perm())
	}
	fs := newFlagSet("client", "", os.Stderr)
	var back clientFlags
	back.add(fs)
	if _, err := fs.parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if _, svc, err := back.resolve(fs); err != nil || svc["vnc"] != "127.0.0.1:5900" || back.gf.key != testKey {
		t.Fatalf("reading the written file back: %v %v %+v", err, svc, back)
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if to == "" {
		return s
	}
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}
