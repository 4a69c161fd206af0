package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serverProcess is a test server's process (the registry, SeaweedFS,
// sshd): started again after a stop with the same command line, its output
// appended to one log file over all its runs, and killed with every
// process it forked, so that connections drop at once, as when a server
// goes away.
type serverProcess struct {
	name string   // says which server in errors
	argv []string // the binary and its arguments
	dir  string   // the working folder; "" for the test's
	env  []string // added to the test's environment
	logf string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs the server unless it runs already, and waits for ready, which
// is given the channel closed when the process exits.
func (p *serverProcess) start(ready func(exited <-chan struct{}) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.name)
	}
	logFile, err := os.OpenFile(p.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = p.dir
	if p.env != nil {
		cmd.Env = append(os.Environ(), p.env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	if err := ready(exited); err != nil {
		return fmt.Errorf("%s: %w\n%s", p.name, err, p.log())
	}
	return nil
}

// stop kills the server and everything it forked; its data stays.
func (p *serverProcess) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	killTree(p.cmd.Process.Pid)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s pid %d did not exit", p.name, p.cmd.Process.Pid)
	}
	p.cmd, p.exited = nil, nil
	return nil
}

// signal sends sig to the server and its descendants: SIGSTOP freezes it
// with its connections open and nothing answering, as a hung server;
// SIGCONT lets it run on.
func (p *serverProcess) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		signalTree(p.cmd.Process.Pid, sig)
	}
}

// log is the end of the server's own log so far, for a failing test.
func (p *serverProcess) log() string {
	b, _ := os.ReadFile(p.logf)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return strings.TrimSpace(string(b))
}

// killTree stops pid and its descendants first (so none forks on), then
// kills them all: sshd's sessions run in processes of their own session,
// which a kill of the process group would miss.
func killTree(pid int) {
	pids := []int{pid}
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for i := 0; i < len(pids); i++ {
		for _, child := range childrenOf(pids[i]) {
			_ = syscall.Kill(child, syscall.SIGSTOP)
			pids = append(pids, child)
		}
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// signalTree sends sig to pid and its descendants.
func signalTree(pid int, sig syscall.Signal) {
	pids := []int{pid}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, childrenOf(pids[i])...)
	}
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses; the fields
		// after its last ")" are state, then ppid.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}
