package pgcluster_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/netport"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// TestWaitGoneFreesTheListener kills, with SIGKILL, a multi-threaded
// process listening on a port, waits with WaitGone, and listens on the
// port at once: as zenith start does after zenith stop --immediate or a
// kill -9. The killed process's main thread turns zombie while its other
// threads may still be exiting, holding its socket open; a WaitGone that
// returned then made the new listener fail with "address already in use"
// (TestKill9Recovery and TestLazyPageserverDown saw it). The window is
// narrow, so the test tries several times; before the fix most rounds
// failed.
func TestWaitGoneFreesTheListener(t *testing.T) {
	for round := 0; round < 20; round++ {
		port, err := netport.Pick("127.0.0.1", 1)
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		helper := exec.Command(os.Args[0], "-test.run=^TestHelperListenAndSpin$")
		helper.Env = append(os.Environ(), "PGCLUSTER_HELPER_LISTEN="+addr)
		helper.Stderr = os.Stderr
		out, err := helper.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			_ = helper.Process.Kill()
			_ = helper.Wait()
			t.Fatalf("helper did not start listening: %v", err)
		}
		if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Not reaped until after the listen: the zombie stays, as a
		// daemon's does until init reaps it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = pgcluster.WaitGone(ctx, helper.Process.Pid)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		l, lerr := net.Listen("tcp", addr)
		_ = helper.Wait()
		if lerr != nil {
			t.Fatalf("round %d: WaitGone returned, but the killed process's port is still taken: %v", round, lerr)
		}
		l.Close()
	}
}

// TestHelperListenAndSpin is TestWaitGoneFreesTheListener's child
// process: it listens, keeps several threads busy, says so and waits to
// be killed.
func TestHelperListenAndSpin(t *testing.T) {
	addr := os.Getenv("PGCLUSTER_HELPER_LISTEN")
	if addr == "" {
		t.Skip("only run by TestWaitGoneFreesTheListener")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 2*runtime.NumCPU()+4; i++ {
		go func() {
			for x := 0; ; x++ {
			}
		}()
	}
	os.Stdout.WriteString("listening\n")
	time.Sleep(time.Minute)
	t.Fatal("not killed by TestWaitGoneFreesTheListener within a minute")
}
