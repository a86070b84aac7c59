package pageserver

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// testRel is a relation of the postgres database that no cluster has.
var testRel = pgdata.RelFileNode{SpcNode: pgdata.DefaultTablespaceOID, DbNode: 5, RelNode: 999999}

// query sends one simple query and returns the SQLSTATE of its error ("" if
// none) after the ReadyForQuery that ends it.
func query(t *testing.T, fe *pgproto3.Frontend, q string) string {
	t.Helper()
	fe.Send(&pgproto3.Query{String: q})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	code := ""
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			code = m.Code
		case *pgproto3.ReadyForQuery:
			return code
		}
	}
}

// stillServes checks that a fresh session gets answers.
func stillServes(t *testing.T, addr, after string) {
	t.Helper()
	_, fe := dialPageService(t, addr)
	if code := query(t, fe, "identify_system"); code != "" {
		t.Fatalf("after %s: identify_system failed with %s", after, code)
	}
}

// closedByServer waits for the server to close conn, ignoring what it
// says first (an ErrorResponse).
func closedByServer(t *testing.T, conn net.Conn, what string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open", what)
		}
	}
}

func TestPageServiceMalformed(t *testing.T) {
	ts := startPageServer(t)
	tenant := id.NewTenantID()
	tn, err := ts.srv.tenants.create(t.Context(), tenant, 0)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.tn.CreateTimeline(id.NewTimelineID(), 0x1000000)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("garbage startup", func(t *testing.T) {
		conn, err := net.Dial("tcp", ts.pgAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		junk := make([]byte, 200)
		rand.Read(junk)
		conn.Write(junk)
		closedByServer(t, conn, "garbage startup")
		stillServes(t, ts.pgAddr, "garbage startup")
	})

	t.Run("huge length", func(t *testing.T) {
		conn, _ := dialPageService(t, ts.pgAddr)
		conn.Write([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
		closedByServer(t, conn, "a 2 GiB message")
		stillServes(t, ts.pgAddr, "a 2 GiB message")
	})

	t.Run("short length", func(t *testing.T) {
		conn, _ := dialPageService(t, ts.pgAddr)
		conn.Write([]byte{'Q', 0, 0, 0, 2})
		closedByServer(t, conn, "a length shorter than itself")
		stillServes(t, ts.pgAddr, "a length shorter than itself")
	})

	t.Run("commands", func(t *testing.T) {
		_, fe := dialPageService(t, ts.pgAddr)
		other := id.NewTenantID().String()
		for _, c := range []struct{ cmd, code string }{
			{"frobnicate", "42601"},
			{"SELECT 1", "42601"},
			{"identify_system now", "42601"},
			{"tenant_create " + other + " 1 " + other, "42601"},
			{"tenant_create " + other + " " + other, "22023"},
			{"tenant_create xyz", "22023"},
			{"tenant_create " + strings.ToUpper(other) + "0", "22023"},
			{"branch_list", "42601"},
			{"branch_list " + other, "42704"},
			{"branch_list " + tenant.String() + " nosuch", "42704"},
			{"branch_list " + tenant.String() + " main extra", "42601"},
			{"branch_create " + tenant.String() + " new nosuch", "42704"},
			{"branch_create " + tenant.String() + " -bad main", "22023"},
			{"branch_create " + tenant.String() + " new main@1/ZZ", "22023"},
			{"branch_create " + tenant.String() + " new main@16/B374D848/1", "22023"},
			{"branch_create " + tenant.String() + " new main@yesterday", "22023"},
			{"branch_create " + tenant.String() + " new " + tl.ID().String() + "@0/100", "55000"},
			{"basebackup " + tenant.String(), "42601"},
			{"basebackup " + tenant.String() + " main 0/0", "22023"},
			{"basebackup " + tenant.String() + " main 12345", "22023"},
			{"basebackup " + tenant.String() + " main 0/1 lazy extra", "42601"},
			{"basebackup " + tenant.String() + " main 0/1 extra", "22023"},
			{"basebackup " + tenant.String() + " ../main", "22023"},
			{"basebackup " + tenant.String() + " " + tl.ID().String(), "55000"},
			{"callmemaybe " + tenant.String() + " main", "42601"},
			{"callmemaybe " + tenant.String() + " " + tl.ID().String() + " host=x", "55000"},
			{"pagestream " + tenant.String(), "42601"},
			{"pagestream " + other + " main", "42704"},
			{"pagestream " + tenant.String() + " main", "42704"},
		} {
			if got := query(t, fe, c.cmd); got != c.code {
				t.Errorf("%q: SQLSTATE %q, want %s", c.cmd, got, c.code)
			}
		}
		if code := query(t, fe, "identify_system"); code != "" {
			t.Errorf("identify_system after bad commands: %s", code)
		}
	})

	t.Run("pagestream", func(t *testing.T) {
		ps := openPagestream(t, ts.pgAddr, "pagestream "+tenant.String()+" "+tl.ID().String())
		// A request the timeline cannot answer is an error response; the
		// stream goes on.
		r := ps.request(t, api.PageRequest{Tag: api.TagExistsRequest, LSN: 0x2000000, Rel: testRel, Fork: 0})
		if r.Tag != api.TagErrorResponse || r.SQLState != "57014" {
			t.Errorf("exists at a future LSN: %+v, want error 57014", r)
		}
		for _, c := range []struct {
			what string
			msg  []byte
		}{
			{"a truncated request", api.PageRequest{Tag: api.TagGetPageRequest, LSN: 0x1000000, Rel: testRel}.Encode()[:12]},
			{"an unknown tag", append([]byte{0x09, 0}, make([]byte, 8)...)},
			{"an empty message", nil},
		} {
			ps.fe.Send(&pgproto3.CopyData{Data: c.msg})
			if err := ps.fe.Flush(); err != nil {
				t.Fatal(err)
			}
			code := ""
			for {
				msg, err := ps.fe.Receive()
				if err != nil {
					t.Fatalf("%s: %v", c.what, err)
				}
				if e, ok := msg.(*pgproto3.ErrorResponse); ok {
					code = e.Code
				}
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
			if code != "08P01" {
				t.Errorf("%s: SQLSTATE %q, want 08P01", c.what, code)
			}
			// The session goes on after the COPY ended in an error: the
			// client's CopyDone arrives late and is ignored.
			ps.fe.Send(&pgproto3.CopyDone{})
			if code := query(t, ps.fe, "identify_system"); code != "" {
				t.Fatalf("after %s: identify_system failed with %s", c.what, code)
			}
			ps = openPagestream(t, ts.pgAddr, "pagestream "+tenant.String()+" "+tl.ID().String())
		}
		// A huge CopyData closes the session; the server still serves.
		var hdr [5]byte
		hdr[0] = 'd'
		binary.BigEndian.PutUint32(hdr[1:], 1<<30)
		ps.conn.Write(hdr[:])
		closedByServer(t, ps.conn, "a 1 GiB CopyData")
		stillServes(t, ts.pgAddr, "a 1 GiB CopyData")
	})
}
