package peer

import "testing"

func TestParseGateway(t *testing.T) {
	tests := []struct {
		in      string
		tls     bool
		host    string
		wantErr bool
	}{
		{"gw.example.com:3085", true, "gw.example.com:3085", false},
		{"gw.example.com", true, "gw.example.com:443", false},
		{"https://gw.example.com", true, "gw.example.com:443", false},
		{"http://10.0.0.1:3085", false, "10.0.0.1:3085", false},
		{"http://[::1]:3085", false, "[::1]:3085", false},
		{"[::1]", true, "[::1]:443", false},
		{"ftp://gw", false, "", true},
		{"https://gw/some/path", false, "", true},
		{"", false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			g, err := ParseGateway(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (g.TLS != tt.tls || g.Host != tt.host) {
				t.Fatalf("got %+v, want tls=%v host=%s", g, tt.tls, tt.host)
			}
		})
	}
}
