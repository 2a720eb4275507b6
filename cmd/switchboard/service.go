package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kardianos/service"
)

const serviceName = "switchboard-client"

// defaultClientConfigPath is where install keeps the Client's settings.
func defaultClientConfigPath() string {
	switch runtime.GOOS {
	case "windows":
		base := os.Getenv("ProgramData")
		if base == "" {
			base = `C:\ProgramData`
		}
		return filepath.Join(base, "Switchboard", "client.conf")
	case "darwin":
		return "/Library/Application Support/Switchboard/client.conf"
	}
	return "/etc/switchboard/client.conf"
}

// systemdUnit replaces the library's default unit: it waits for the network,
// restarts after 5 s instead of 2 minutes (a Client that is down is a
// machine nobody can help), and confines the agent, which only reads its
// settings and opens sockets.
const systemdUnit = `[Unit]
Description={{Description}}
ConditionFileIsExecutable={{Path | cmdEscape}}
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}
Restart=always
RestartSec=5
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes

[Install]
WantedBy=multi-user.target
`

// agentProgram adapts the agent to the service manager's Start and Stop.
type agentProgram struct {
	run    func(context.Context) error
	cancel context.CancelFunc
	done   chan error
}

func (p *agentProgram) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- p.run(ctx) }()
	return nil
}

func (p *agentProgram) Stop(service.Service) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	return <-p.done
}

func newClientService(configPath string) (service.Service, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program: %w", err)
	}
	return service.New(&agentProgram{}, &service.Config{
		Name:        serviceName,
		DisplayName: "Switchboard Client",
		Description: "Switchboard Client agent: keeps this machine reachable through a Switchboard gateway.",
		Executable:  exe,
		Arguments:   []string{"client", "--config", configPath},
		Option: service.KeyValue{
			"SystemdScript": systemdUnit,
			"KeepAlive":     true, // launchd: restart after any exit
			"RunAtLoad":     true, // launchd: start at boot
			"OnFailure":     "restart",
		},
	})
}

// runAsService runs the agent directly when started from a terminal or a
// script, and through the service manager when Windows' service control
// manager started it (it must be answered, or it kills the process).
func runAsService(ctx context.Context, run func(context.Context) error) error {
	if runtime.GOOS != "windows" || service.Interactive() {
		return run(ctx)
	}
	p := &agentProgram{run: run}
	s, err := service.New(p, &service.Config{Name: serviceName})
	if err != nil {
		return err
	}
	return s.Run()
}

func (e *cmdEnv) clientService(ctx context.Context, verb string, args []string) error {
	fs := newFlagSet("client "+verb, clientUsage, e.stderr)
	var cf clientFlags
	cf.add(fs)
	configPath := fs.String("config-path", defaultClientConfigPath(), "where install writes the Client's config file")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("client %s takes no arguments (got %q)", verb, pos)
	}
	fs.warnSecretFlags(e.stderr, keySafer)
	switch verb {
	case "install":
		if _, _, err := cf.resolve(fs); err != nil {
			return err
		}
		if err := writeClientConfig(*configPath, cf); err != nil {
			return err
		}
		s, err := newClientService(*configPath)
		if err != nil {
			return err
		}
		if err := s.Install(); err != nil {
			return fmt.Errorf("install the %s service: %w", serviceName, err)
		}
		if err := s.Start(); err != nil {
			return fmt.Errorf("installed the %s service, but it did not start: %w", serviceName, err)
		}
		fmt.Fprintf(e.stdout, "installed and started the %s service (%s); settings in %s\n", serviceName, service.ChosenSystem(), *configPath)
	case "uninstall":
		s, err := newClientService(*configPath)
		if err != nil {
			return err
		}
		_ = s.Stop() // it may not be running; uninstall is what matters
		if err := s.Uninstall(); err != nil {
			return fmt.Errorf("uninstall the %s service: %w", serviceName, err)
		}
		// The file holds the gateway key: do not leave it behind.
		if err := os.Remove(*configPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", *configPath, err)
		}
		fmt.Fprintf(e.stdout, "uninstalled the %s service\n", serviceName)
	case "status":
		s, err := newClientService(*configPath)
		if err != nil {
			return err
		}
		st, err := s.Status()
		switch {
		case errors.Is(err, service.ErrNotInstalled):
			fmt.Fprintf(e.stdout, "%s: not installed\n", serviceName)
		case err != nil:
			return fmt.Errorf("status of the %s service: %w", serviceName, err)
		case st == service.StatusRunning:
			fmt.Fprintf(e.stdout, "%s: running\n", serviceName)
		case st == service.StatusStopped:
			fmt.Fprintf(e.stdout, "%s: stopped\n", serviceName)
		default:
			fmt.Fprintf(e.stdout, "%s: unknown\n", serviceName)
		}
	}
	return nil
}

// writeClientConfig saves the Client's settings in the config file format,
// readable only by its owner since it holds the gateway key.
func writeClientConfig(path string, cf clientFlags) error {
	var b strings.Builder
	b.WriteString("# Switchboard Client settings, written by `switchboard client install`.\n")
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s = %s\n", k, v)
		}
	}
	line("gateway", cf.gf.gateway)
	line("secondary", cf.gf.secondary)
	line("key", cf.gf.key)
	line("ca", absOrEmpty(cf.gf.ca))
	line("fingerprint", cf.gf.fingerprint)
	line("secondary-fingerprint", cf.gf.secondaryFingerprint)
	line("proxy", cf.gf.proxy)
	line("name", cf.name)
	for _, s := range cf.services {
		line("service", s)
	}
	if cf.logJSON {
		line("log-json", "true")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("config folder: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// WriteFile keeps the mode of an existing file: make sure.
	return os.Chmod(path, 0o600)
}

func absOrEmpty(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
