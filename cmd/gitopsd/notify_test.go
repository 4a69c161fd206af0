package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// notification is one datagram the daemon sent to NOTIFY_SOCKET.
type notification struct {
	at    time.Time
	state string
}

// TestSystemdNotify: a NOTIFY_SOCKET peer receives READY=1 once the API
// listens, STATUS= lines, and with WATCHDOG_USEC set WATCHDOG=1 every half
// period from the reconcile loop itself; while the loop is busy (a deploy
// waiting 3 s for a one-shot job) the pings stop, then resume.
func TestSystemdNotify(t *testing.T) {
	image := testenv.AppImage(t, "gitopsd-test-notify:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "notify")
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": notifyStack(image, "1")})
	state, sock, cfgPath := daemonState(t, repo.Bare)

	peerPath := filepath.Join(t.TempDir(), "notify.sock")
	peer, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: peerPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	got := make(chan notification, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := peer.ReadFromUnix(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				got <- notification{at: time.Now(), state: line}
			}
		}
	}()
	const period = 400 * time.Millisecond // WATCHDOG_USEC; pings every 200ms
	startDaemon(t, cfgPath, state, "NOTIFY_SOCKET="+peerPath, fmt.Sprintf("WATCHDOG_USEC=%d", period.Microseconds()))

	next := func(within time.Duration) notification {
		t.Helper()
		select {
		case n := <-got:
			return n
		case <-time.After(within):
			t.Fatalf("no notification within %s", within)
		}
		return notification{}
	}
	// Idle means after the first reconcile (its STATUS= line): the loop
	// pings from the start, but that reconcile's deploy waits on the job.
	var ready, status bool
	var pings []time.Time
	for len(pings) < 10 {
		n := next(60 * time.Second)
		switch {
		case n.state == "READY=1":
			ready = true
		case strings.HasPrefix(n.state, "STATUS="):
			status = status || !strings.HasPrefix(n.state, "STATUS=listening")
			t.Logf("%s", n.state)
		case n.state == "WATCHDOG=1":
			if !ready {
				t.Fatal("a watchdog ping before READY=1")
			}
			if status {
				pings = append(pings, n.at)
			}
		}
	}
	if !ready || !status {
		t.Fatalf("ready %v, status %v", ready, status)
	}
	for i := 1; i < len(pings); i++ {
		if gap := pings[i].Sub(pings[i-1]); gap > period {
			t.Fatalf("idle, ping %d came %s after the previous one, more than the %s period", i, gap, period)
		}
	}

	// Wedge the loop: a deploy whose one-shot job runs for 3s.
	repo.Commit(t, "v2", map[string]string{"stacks/" + name + "/compose.yaml": notifyStack(image, "2")})
	if out, errOut, code := gitopsd(t, nil, "sync", "--socket", sock); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	last, longest := time.Now(), time.Duration(0)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		n := next(30 * time.Second)
		if n.state != "WATCHDOG=1" {
			continue
		}
		if gap := n.at.Sub(last); gap > longest {
			longest = gap
		}
		last = n.at
		if longest > 2*time.Second {
			break
		}
	}
	if longest < 2*time.Second {
		t.Fatalf("the pings went on while the loop was busy with a 3s deploy (longest gap %s)", longest)
	}
	t.Logf("pings stopped for %s while the loop deployed", longest.Round(time.Millisecond))
	resumed := 0
	for resumed < 3 {
		if n := next(30 * time.Second); n.state == "WATCHDOG=1" {
			resumed++
		}
	}
}

// notifyStack has a web service that waits for a one-shot job of 3s.
func notifyStack(image, version string) string {
	return testenv.JobStack{Image: image, JobFor: "3s", JobVersion: version, WebVersion: version}.Compose()
}
