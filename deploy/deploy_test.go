// Package deploy_test keeps the deployment files honest: no Docker engine
// or systemd runs where the tests run, so the files are loaded by the same
// parsers those tools use (compose-go for the compose file) and checked for
// what production relies on.
package deploy_test

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		// Interpolation sees only what the test gives it.
		Environment: types.Mapping{"POSTGRES_PASSWORD": "pw-from-env"},
	}, func(o *loader.Options) {
		o.SetProjectName("switchboard", true)
		o.Profiles = profiles
	})
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	db, err := p.GetService("db")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := p.GetService("gateway")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("postgres is the official image with a healthcheck", func(t *testing.T) {
		if !strings.HasPrefix(db.Image, "postgres:") {
			t.Errorf("db image %q", db.Image)
		}
		hc := db.HealthCheck
		if hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "pg_isready") || hc.Interval == nil || hc.Retries == nil {
			t.Errorf("db healthcheck %+v", hc)
		}
	})
	t.Run("the gateway waits for a healthy database", func(t *testing.T) {
		dep, ok := gw.DependsOn["db"]
		if !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("depends_on = %+v", gw.DependsOn)
		}
	})
	t.Run("both restart unless stopped", func(t *testing.T) {
		for _, s := range []types.ServiceConfig{db, gw} {
			if s.Restart != types.RestartPolicyUnlessStopped {
				t.Errorf("%s restart = %q", s.Name, s.Restart)
			}
		}
	})
	t.Run("port 443 reaches the port the gateway listens on", func(t *testing.T) {
		listen := gw.Environment["SWITCHBOARD_LISTEN"]
		if listen == nil {
			t.Fatal("SWITCHBOARD_LISTEN not set")
		}
		_, port, err := net.SplitHostPort(*listen)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, pc := range gw.Ports {
			found = found || (pc.Published == "443" && pc.Target == mustAtoi(t, port))
		}
		if !found {
			t.Errorf("ports %+v do not publish 443 to %s", gw.Ports, port)
		}
	})
	t.Run("data lives in named volumes", func(t *testing.T) {
		want := map[string]string{"db": "/var/lib/postgresql/data", "gateway": "/var/lib/switchboard"}
		for _, s := range []types.ServiceConfig{db, gw} {
			var ok bool
			for _, v := range s.Volumes {
				_, declared := p.Volumes[v.Source]
				ok = ok || (v.Type == types.VolumeTypeVolume && declared && v.Target == want[s.Name])
			}
			if !ok {
				t.Errorf("%s volumes %+v, want a named volume at %s", s.Name, s.Volumes, want[s.Name])
			}
		}
	})
	t.Run("the gateway reaches the database service with the shared password", func(t *testing.T) {
		dsn := gw.Environment["SWITCHBOARD_DATABASE_URL"]
		if dsn == nil {
			t.Fatal("SWITCHBOARD_DATABASE_URL not set")
		}
		u, err := url.Parse(*dsn)
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		if u.Hostname() != "db" || pw != "pw-from-env" || *db.Environment["POSTGRES_PASSWORD"] != "pw-from-env" {
			t.Errorf("database URL %q (password %q)", *dsn, pw)
		}
	})
}

// TestComposeSecondary checks the "secondary" profile: a second node of the
// same cluster (same database, its own name, role secondary, the primary's
// secrets key) on another published port, and absent without the profile.
func TestComposeSecondary(t *testing.T) {
	if _, err := loadCompose(t).GetService("secondary"); err == nil {
		t.Fatal("the secondary runs without its profile")
	}
	p := loadCompose(t, "secondary")
	gw, err := p.GetService("gateway")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := p.GetService("secondary")
	if err != nil {
		t.Fatal(err)
	}
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	if env(sec, "SWITCHBOARD_DATABASE_URL") != env(gw, "SWITCHBOARD_DATABASE_URL") {
		t.Error("the secondary does not share the primary's database")
	}
	if env(sec, "SWITCHBOARD_ROLE") != "secondary" || env(sec, "SWITCHBOARD_NODE") == env(gw, "SWITCHBOARD_NODE") {
		t.Errorf("secondary node %q role %q, primary node %q", env(sec, "SWITCHBOARD_NODE"), env(sec, "SWITCHBOARD_ROLE"), env(gw, "SWITCHBOARD_NODE"))
	}
	keyFile := env(sec, "SWITCHBOARD_SECRETS_KEY_FILE")
	var shared bool
	for _, v := range sec.Volumes {
		shared = shared || (v.Source == "gwdata" && v.ReadOnly && strings.HasPrefix(keyFile, v.Target+"/"))
	}
	if !shared {
		t.Errorf("the secondary's secrets key %q is not the primary's (volumes %+v)", keyFile, sec.Volumes)
	}
	if len(sec.Ports) == 0 || sec.Ports[0].Published == "443" {
		t.Errorf("secondary ports %+v: want its own published port", sec.Ports)
	}
	if !strings.HasSuffix(env(sec, "SWITCHBOARD_ADVERTISE"), ":"+sec.Ports[0].Published) {
		t.Errorf("secondary advertises %q but publishes %+v", env(sec, "SWITCHBOARD_ADVERTISE"), sec.Ports)
	}
}

func mustAtoi(t *testing.T, s string) uint32 {
	t.Helper()
	var n uint32
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("port %q", s)
		}
		n = n*10 + uint32(c-'0')
	}
	return n
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var build, user string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "FROM "):
			froms = append(froms, line)
		case strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build"):
			build = line
		case strings.HasPrefix(line, "USER "):
			user = strings.TrimPrefix(line, "USER ")
		}
	}
	if len(froms) != 2 || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("want a build stage and a final stage, got %q", froms)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/switchboard") {
		t.Errorf("build step %q is not the static build CI checks", build)
	}
	if len(froms) == 2 && !strings.Contains(froms[1], "distroless/static") {
		t.Errorf("final stage %q is not a small static base", froms[1])
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Errorf("final stage runs as %q, want a non-root user", user)
	}
}

func TestSystemdUnit(t *testing.T) {
	f, err := os.Open("switchboard.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		unit[section+"."+k] = append(unit[section+"."+k], v)
	}
	for key, want := range map[string]string{
		"Service.Restart":             "on-failure",
		"Service.NoNewPrivileges":     "yes",
		"Service.ProtectSystem":       "strict",
		"Service.AmbientCapabilities": "CAP_NET_BIND_SERVICE",
		"Service.ExecStart":           "/usr/local/bin/switchboard serve",
		"Install.WantedBy":            "multi-user.target",
	} {
		if !slices.Contains(unit[key], want) {
			t.Errorf("%s = %q, want %q", key, unit[key], want)
		}
	}
	if u := unit["Service.User"]; len(u) != 1 || u[0] == "root" {
		t.Errorf("User = %q, want an unprivileged user", u)
	}
}
