package source

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// fleetPollsPerSecond is the load the Git server's figures are scaled to
// in the report: 1,000 hosts polling once a minute.
const fleetPollsPerSecond = 1000.0 / 60

// BenchmarkGitServerNoChangePoll measures what a fleet's polls cost the Git
// server when nothing changed: one `git http-backend` behind Go's CGI
// handler on 127.0.0.1 (testenv.GitRepo.ServeHTTP), a repository of 50
// stacks, and 50 or 200 mirrors fetching its unchanged head at the same
// moment with gitopsd's own fetch (Source.Fetch). One iteration is one
// round: every poller fetches once.
//
// Per poll: the bytes the server wrote on the wire (status line, headers
// and body), the server's CPU (git http-backend and the git upload-pack it
// runs: the CPU of this process's reaped children, which nothing else
// spawns during a round), how many ref advertisements and upload-pack
// POSTs it answered. A no-change poll must cost exactly one advertisement
// and no POST: a POST is a negotiation, and maybe a pack, for nothing. The
// figures scaled to 1,000 hosts polling once a minute come last. The CPU
// of the CGI wrapper itself (Go's net/http in this process) is not in
// server-cpu: a real server's web server does that part.
func BenchmarkGitServerNoChangePoll(b *testing.B) {
	repo := testenv.NewGitRepo(b)
	files := map[string]string{}
	for i := range 50 {
		files[fmt.Sprintf("stacks/s%02d/compose.yaml", i)] = fmt.Sprintf("services:\n  web:\n    image: registry.example/web:%d\n    ports: [\"%d:80\"]\n", i, 8000+i)
	}
	repo.Commit(b, "50 stacks", files)
	head := repo.Commit(b, "a second commit", map[string]string{"stacks/s00/compose.yaml": "services:\n  web:\n    image: registry.example/web:v2\n"})
	url := repo.ServeHTTP(b, "")

	// The mirrors, cloned once and shared by both sizes.
	var sources []*Source
	mirrors := func(n int) []*Source {
		b.Helper()
		for len(sources) < n {
			s := newSource(b, Options{URL: url})
			if rev := mustFetch(b, s); rev.SHA != head {
				b.Fatalf("clone got %s, want %s", rev.SHA, head)
			}
			sources = append(sources, s)
		}
		return sources[:n]
	}

	for _, pollers := range []int{50, 200} {
		b.Run(fmt.Sprintf("pollers=%d", pollers), func(b *testing.B) {
			ss := mirrors(pollers)
			var (
				total    testenv.Served
				cpu      time.Duration
				rounds   int
				firstErr error
			)
			b.ResetTimer()
			for b.Loop() {
				before, cpuBefore := repo.Served(), childrenCPU(b)
				errs := pollRound(ss, head)
				cpu += childrenCPU(b) - cpuBefore
				d := repo.Served().Sub(before)
				total.WireBytes += d.WireBytes
				total.BodyBytes += d.BodyBytes
				total.RefAdverts += d.RefAdverts
				total.UploadPackPOST += d.UploadPackPOST
				rounds++
				if firstErr == nil && len(errs) > 0 {
					firstErr = fmt.Errorf("%d of %d polls failed, first: %w", len(errs), pollers, errs[0])
				}
			}
			b.StopTimer()
			if firstErr != nil {
				b.Fatal(firstErr)
			}
			polls := float64(rounds * pollers)
			perPoll := func(v int64) float64 { return float64(v) / polls }
			cpuPerPoll := cpu.Seconds() / polls
			b.ReportMetric(perPoll(total.WireBytes), "server-bytes/poll")
			b.ReportMetric(perPoll(total.BodyBytes), "server-body-bytes/poll")
			b.ReportMetric(cpuPerPoll*1000, "server-cpu-ms/poll")
			b.ReportMetric(perPoll(total.RefAdverts), "ref-adverts/poll")
			b.ReportMetric(perPoll(total.UploadPackPOST), "upload-pack-posts/poll")
			b.ReportMetric(cpuPerPoll*fleetPollsPerSecond*100, "server-cpu-%core-1000-hosts-1/min")
			b.ReportMetric(perPoll(total.WireBytes)*fleetPollsPerSecond/1024, "server-KiB/s-1000-hosts-1/min")
			if total.UploadPackPOST > 0 || total.RefAdverts != int64(polls) {
				// A bug for the fetch path, not for the benchmark: the
				// figures above say what it costs, this says what was sent.
				b.Logf("a no-change poll is not one ref advertisement: %d polls got %d advertisements and %d upload-pack POSTs (%.0f body bytes a poll)",
					int64(polls), total.RefAdverts, total.UploadPackPOST, perPoll(total.BodyBytes))
			}
		})
	}
}

// pollRound has every source fetch once, all released at the same moment,
// and returns the failed fetches (an unexpected head is one).
func pollRound(ss []*Source, head string) []error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		start = make(chan struct{})
	)
	for _, s := range ss {
		wg.Go(func() {
			<-start
			rev, err := s.Fetch(context.Background())
			if err == nil && rev.SHA != head {
				err = fmt.Errorf("fetched head %s, want the unchanged %s", rev.SHA, head)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// childrenCPU is the user and system CPU of this process's children that
// have ended and been waited for: here, the CGI processes of the Git server.
func childrenCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatalf("CPU of the Git server's processes: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestNoChangeFetchIsOneRefAdvertisement: a fetch that finds the head it
// already has costs a smart-HTTP server one ref advertisement and no
// upload-pack POST (no negotiation, no pack); a fetch of a new commit
// needs the POST. A fleet of hosts polling one server depends on the
// first (BenchmarkGitServerNoChangePoll measures its cost).
func TestNoChangeFetchIsOneRefAdvertisement(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "one", map[string]string{"stacks/web/compose.yaml": "services: {}\n"})
	s := newSource(t, Options{URL: repo.ServeHTTP(t, "")})
	mustFetch(t, s)

	before := repo.Served()
	mustFetch(t, s)
	if got := repo.Served().Sub(before); got.RefAdverts != 1 || got.UploadPackPOST != 0 {
		t.Errorf("a no-change fetch was served %+v, want one ref advertisement and no upload-pack POST", got)
	}

	head := repo.Commit(t, "two", map[string]string{"stacks/web/compose.yaml": "services: {web: {image: x}}\n"})
	before = repo.Served()
	if rev := mustFetch(t, s); rev.SHA != head {
		t.Fatalf("fetched %s, want %s", rev.SHA, head)
	}
	if got := repo.Served().Sub(before); got.RefAdverts != 1 || got.UploadPackPOST != 1 {
		t.Errorf("a fetch of a new commit was served %+v, want one ref advertisement and one upload-pack POST", got)
	}
}
