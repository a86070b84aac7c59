package pgdump

import (
	"strings"
	"testing"
)

const dumpHead = `CREATE SEQUENCE public.up
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    CACHE 1;

CREATE SEQUENCE public.down
    AS integer
    START WITH -1
    INCREMENT BY -2
    CACHE 1;

ALTER TABLE public.t ALTER COLUMN a ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.t_a_seq
    START WITH 1
    INCREMENT BY 10
    CACHE 1
);
`

func dump(up, down, ident string) string {
	return dumpHead +
		"SELECT pg_catalog.setval('public.up', " + up + ", true);\n" +
		"SELECT pg_catalog.setval('public.down', " + down + ", true);\n" +
		"SELECT pg_catalog.setval('public.t_a_seq', " + ident + ", true);\n"
}

func TestCompare(t *testing.T) {
	want := dump("5", "-9", "41")
	for _, tc := range []struct {
		name, got string
		problem   string // a substring of the only problem; "" for none
	}{
		{"equal", want, ""},
		{"logged ahead", dump("37", "-73", "361"), ""},
		{"too far ahead", dump("38", "-9", "41"), "sequence public.up: 38"},
		{"behind", dump("4", "-9", "41"), "sequence public.up: 4"},
		{"descending logged ahead", dump("5", "-11", "41"), ""},
		{"descending wrong way", dump("5", "-7", "41"), "sequence public.down: -7"},
		{"identity not a whole increment", dump("5", "-9", "45"), "sequence public.t_a_seq: 45"},
		{"other difference", strings.Replace(want, "CACHE 1;", "CACHE 2;", 1), "line 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Compare(tc.got, want)
			if c.Sequences != 3 {
				t.Errorf("Sequences = %d, want 3", c.Sequences)
			}
			switch {
			case tc.problem == "" && len(c.Problems) != 0:
				t.Errorf("problems %q, want none", c.Problems)
			case tc.problem != "" && (len(c.Problems) != 1 || !strings.Contains(c.Problems[0], tc.problem)):
				t.Errorf("problems %q, want one with %q", c.Problems, tc.problem)
			}
		})
	}
}
