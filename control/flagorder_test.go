package control

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestFlagsAfterArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    string // what the action saw
		wantErr string
	}{
		{args: []string{"pg", "create", "main"}, want: "args=[main] name= port=0 c=[] json=false"},
		{args: []string{"pg", "create", "--name", "n", "main"}, want: "args=[main] name=n port=0 c=[] json=false"},
		{args: []string{"pg", "create", "main", "--name", "n", "--port=5", "-c", "a=-1", "-c", "b=2", "--json"}, want: "args=[main] name=n port=5 c=[a=-1 b=2] json=true"},
		{args: []string{"pg", "create", "main", "--json", "extra"}, want: "args=[main extra] name= port=0 c=[] json=true"},
		{args: []string{"pg", "create", "main", "--", "--name"}, want: "args=[main --name] name= port=0 c=[] json=false"},
		{args: []string{"pg", "create", "main", "--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{args: []string{"pg", "create", "main", "--port", "x"}, wantErr: "invalid value"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var got string
			create := &cli.Command{
				Name: "create",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name"},
					&cli.IntFlag{Name: "port"},
					&cli.StringSliceFlag{Name: "c"},
					&cli.BoolFlag{Name: "json"},
				},
				Action: func(c *cli.Context) error {
					got = fmt.Sprintf("args=%v name=%s port=%d c=%v json=%v", c.Args().Slice(), c.String("name"), c.Int("port"), c.StringSlice("c"), c.Bool("json"))
					return nil
				},
			}
			pg := &cli.Command{Name: "pg", Subcommands: []*cli.Command{create}}
			allowFlagsAfterArgs(pg)
			var out bytes.Buffer
			app := &cli.App{Name: "zenith", Commands: []*cli.Command{pg}, Writer: &out, ErrWriter: &out}
			err := app.Run(append([]string{"zenith"}, tc.args...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			if got != tc.want {
				t.Errorf("action saw %q, want %q", got, tc.want)
			}
		})
	}
}
