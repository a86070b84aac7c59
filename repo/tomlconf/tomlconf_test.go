package tomlconf

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Port    int      `toml:"port"`
	Timeout Duration `toml:"timeout"`
	Sub     struct {
		Name string `toml:"name"`
	} `toml:"sub"`
}

func TestDecodeStrict(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // substring of the error; "" for success
	}{
		{"port = 5\ntimeout = '90s'\n", ""},
		{"", ""},
		{"prot = 5\n", "unknown setting"},
		{"prot = 5\n", "prot"},
		{"[sub]\nnmae = 'x'\n", "nmae"},
		{"port = 'x'\n", "f.toml:1:"},
		{"timeout = 'soon'\n", "soon"},
		{"timeout = 'soon'\n", "timeout"},
		{"port = \n", "f.toml"},
	} {
		v := sample{Port: 1, Timeout: Duration(time.Minute)}
		err := DecodeStrict("f.toml", []byte(tc.in), &v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
	v := sample{Port: 1, Timeout: Duration(time.Minute)}
	if err := DecodeStrict("f.toml", []byte("timeout = '90s'\n"), &v); err != nil || v.Port != 1 || time.Duration(v.Timeout) != 90*time.Second {
		t.Errorf("got %+v, %v; want the default port and a 90s timeout", v, err)
	}
}

func TestDurationRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{0, time.Second, 7*time.Hour + 30*time.Minute, 168 * time.Hour} {
		b, err := Duration(d).MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || time.Duration(back) != d {
			t.Errorf("%v: %s read back as %v, %v", d, b, time.Duration(back), err)
		}
	}
}
