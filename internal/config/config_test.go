package config

import (
	"strings"
	"testing"
	"time"
)

func valid() Config {
	return Config{Listen: []string{":443"}, CMPI: time.Minute, LogDir: "/var/log/sb", LogMaxKB: 1000, ServerRole: RoleStandalone}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"a valid configuration passes", func(*Config) {}, ""},
		{"no listen address is refused", func(c *Config) { c.Listen = nil }, "at least one listen"},
		{"a host name is refused as listen address", func(c *Config) { c.Listen = []string{"gw.example.com:443"} }, "not an IP"},
		{"a port past 65535 is refused", func(c *Config) { c.Listen = []string{"10.0.0.1:70000"} }, "port must be"},
		{"CMPI under a second is refused", func(c *Config) { c.CMPI = 0 }, "CMPI"},
		{"an unknown role is refused", func(c *Config) { c.ServerRole = "boss" }, "server role"},
		{"a negative licence is refused", func(c *Config) { c.MaxClients = -1 }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRowsRoundTrip(t *testing.T) {
	c := valid()
	c.Listen = []string{"10.0.0.1:443", "10.0.0.2:3085"}
	c.MaxClients = 25
	c.PeerGateways = []string{"gw2:443"}
	back, err := FromRows(Config{}, c.Rows())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(back.Listen, ",") != "10.0.0.1:443,10.0.0.2:3085" || back.MaxClients != 25 || back.CMPI != time.Minute || back.PeerGateways[0] != "gw2:443" {
		t.Fatalf("round trip = %+v", back)
	}
	if _, err := FromRows(c, map[string]string{"cmpi_seconds": "soon"}); err == nil {
		t.Fatal("a corrupt stored value was accepted")
	}
	if got := Changes(c, back); len(got) != 0 {
		t.Fatalf("Changes of equal configs = %q", got)
	}
	back.CMPI = 30 * time.Second
	if got := Changes(c, back); len(got) != 1 || got[0] != "CMPI from 1m0s to 30s" {
		t.Fatalf("Changes = %q", got)
	}
}
