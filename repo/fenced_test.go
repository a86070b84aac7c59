package repo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// TestFencedObjectsRemoved: objects of an older generation that no index
// of the current one lists are removed by the current attachment, never
// an object its index lists. Page server A holds a tenant at generation
// 1 and leaves, besides its index and layers, a layer of an upload that
// never reached an index. B attaches at generation 2 (downloading no
// layer), and A, now a zombie, goes on: it compacts and uploads its index
// again, listing other layers. B still reads what A had uploaded when B
// attached (before, B's first fetch read the zombie's new index, which
// no longer listed the layers B's attach had found). B's first upload
// removes generation 1's index, the orphan, the zombie's new layers and
// the tenant settings B replaced, and keeps generation 1's layers that
// its index lists; the zombie's next uploads go at B's next sweep. A page
// server attached at generation 3 on an empty disk (every layer fetched
// from remote storage) reads what B wrote.
func TestFencedObjectsRemoved(t *testing.T) {
	ctx := context.Background()
	s := newRemoteSetup()
	a := s.open(t, nil)
	defer a.Close()
	tid, main := id.NewTenantID(), id.NewTimelineID()
	tnA, err := a.CreateTenant(tid, smallTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	tlA, err := tnA.CreateTimeline(main, 0xF0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AttachTenant(ctx, tid, 1); err != nil {
		t.Fatal(err)
	}
	writeHistory(t, tlA, 0, 40)
	if err := tnA.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	endA := tlA.RemoteConsistentLSN()
	wantA := readAll(t, tlA, endA)
	prefix := "tenants/" + tid.String() + "/"
	tlPrefix := prefix + "timelines/" + main.String() + "/"
	orphan := tlPrefix + "000000000000000000000000000000000000-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF__0000000000000100-0000000000000200-00000001"
	if err := s.remote.Upload(ctx, orphan, strings.NewReader("a layer whose index never came")); err != nil {
		t.Fatal(err)
	}

	var now atomic.Int64
	now.Store(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixNano())
	b := s.openWith(t, nil, func(c *repo.Config) { c.Now = func() time.Time { return time.Unix(0, now.Load()) } })
	defer b.Close()
	tlB := attachTimeline(t, b, tid, 2, main)
	// zombie has A write, compact and upload as if it held the tenant.
	zombie := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			put(t, tlA, pgdata.LSN(0x100+i*0x10), map[key.Key]value.Value{blk(uint32(i % 4)): ini("Z")})
			if i%8 == 7 {
				if err := tlA.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tnA.Compact(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tnA.Upload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	zombie(40, 100)
	gotB := readAll(t, tlB, endA)
	for lsn, w := range wantA {
		if gotB[lsn] != w {
			t.Fatalf("at %v: generation 2 reads %q, generation 1 read %q when generation 2 attached", lsn, gotB[lsn], w)
		}
	}

	writeHistory(t, tlB, 40, 24)
	if err := tlB.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tnB, _ := b.Tenant(tid)
	if err := tnB.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	end := tlB.RemoteConsistentLSN()
	want := readAll(t, tlB, end)
	listed := indexObjects(t, s, tlPrefix+"index.json-00000002")
	inherited := 0
	for p := range objectsOf(t, s, tid, 1) {
		if !listed[p] {
			t.Errorf("after generation 2's first upload, %s of generation 1 is still there; no index of generation 2 lists it", p)
		}
		inherited++
	}
	if inherited == 0 {
		t.Fatal("generation 2's index lists no layer of generation 1: the test proves nothing about keeping them")
	}
	for _, p := range []string{orphan, tlPrefix + "index.json-00000001", prefix + "config.toml-00000001"} {
		if exists(t, s, p) {
			t.Errorf("%s is still there after generation 2's first upload", p)
		}
	}
	checkListed(t, s, listed, "after generation 2's first upload")

	zombie(100, 140)
	var zombies []string
	for p := range objectsOf(t, s, tid, 1) {
		if !listed[p] {
			zombies = append(zombies, p)
		}
	}
	if len(zombies) == 0 {
		t.Fatal("the zombie uploaded nothing")
	}
	// B's next upload round comes before the sweep interval: it looks
	// at nothing; past it, the zombie's objects go.
	if err := tnB.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(11 * time.Minute))
	if err := tnB.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range zombies {
		if exists(t, s, p) {
			t.Errorf("%s, uploaded by the zombie of generation 1, is still there after generation 2's sweep", p)
		}
	}
	checkListed(t, s, listed, "after generation 2's sweep")

	c := s.open(t, nil)
	defer c.Close()
	tlC := attachTimeline(t, c, tid, 3, main)
	got := readAll(t, tlC, end)
	for lsn, w := range want {
		if got[lsn] != w {
			t.Errorf("at %v: generation 3 reads %q, generation 2 read %q", lsn, got[lsn], w)
		}
	}
}

// indexObjects returns the object paths of the layers the index at p
// lists.
func indexObjects(t *testing.T, s *remoteSetup, p string) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	if err := s.remote.Download(context.Background(), p, &buf); err != nil {
		t.Fatal(err)
	}
	var env struct {
		Body struct {
			LayerFiles map[string]struct {
				Generation repo.Generation `json:"generation"`
			} `json:"layer_files"`
		} `json:"body"`
	}
	if err := json.Unmarshal(buf.Bytes(), &env); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	dir := p[:strings.LastIndexByte(p, '/')+1]
	out := map[string]bool{}
	for name, l := range env.Body.LayerFiles {
		o := dir + name
		if l.Generation > 0 {
			o += fmt.Sprintf("-%08x", uint32(l.Generation))
		}
		out[o] = true
	}
	return out
}

// checkListed fails unless every object in listed is in remote storage.
func checkListed(t *testing.T, s *remoteSetup, listed map[string]bool, when string) {
	t.Helper()
	for p := range listed {
		if !exists(t, s, p) {
			t.Errorf("%s: %s, which generation 2's index lists, is gone", when, p)
		}
	}
}

func exists(t *testing.T, s *remoteSetup, p string) bool {
	t.Helper()
	objects, err := s.remote.List(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		if o == p {
			return true
		}
	}
	return false
}
