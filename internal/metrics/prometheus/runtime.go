package prometheus

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"
)

// NewGoCollector exposes the Go runtime's metrics under the names of the
// Go client's default Go collector: go_goroutines, go_threads, go_info,
// go_gc_duration_seconds, go_memstats_*, go_sched_gomaxprocs_threads,
// go_gc_gogc_percent and go_gc_gomemlimit_bytes.
func NewGoCollector() Collector { return goCollector{} }

type goCollector struct{}

var (
	goroutinesDesc = NewDesc("go_goroutines", "Number of goroutines that currently exist.", nil, nil)
	threadsDesc    = NewDesc("go_threads", "Number of OS threads created.", nil, nil)
	goInfoDesc     = NewDesc("go_info", "Information about the Go environment.", []string{"version"}, nil)
	gcDesc         = NewDesc("go_gc_duration_seconds", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", nil, nil)
	lastGCDesc     = NewDesc("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", nil, nil)
	maxProcsDesc   = NewDesc("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously.", nil, nil)
	gogcDesc       = NewDesc("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100.", nil, nil)
	memLimitDesc   = NewDesc("go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64.", nil, nil)
)

// memstats are the go_memstats_* series read from runtime.MemStats.
var memstats = []struct {
	desc *Desc
	typ  ValueType
	get  func(*runtime.MemStats) float64
}{
	{memDesc("alloc_bytes", "Number of bytes allocated in heap and currently in use."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.Alloc) }},
	{memDesc("alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already."), CounterValue, func(m *runtime.MemStats) float64 { return float64(m.TotalAlloc) }},
	{memDesc("sys_bytes", "Number of bytes obtained from system."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.Sys) }},
	{memDesc("mallocs_total", "Total number of heap objects allocated, both live and gc-ed."), CounterValue, func(m *runtime.MemStats) float64 { return float64(m.Mallocs) }},
	{memDesc("frees_total", "Total number of heap objects frees."), CounterValue, func(m *runtime.MemStats) float64 { return float64(m.Frees) }},
	{memDesc("heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.HeapAlloc) }},
	{memDesc("heap_sys_bytes", "Number of heap bytes obtained from system."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.HeapSys) }},
	{memDesc("heap_idle_bytes", "Number of heap bytes waiting to be used."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.HeapIdle) }},
	{memDesc("heap_inuse_bytes", "Number of heap bytes that are in use."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.HeapInuse) }},
	{memDesc("heap_released_bytes", "Number of heap bytes released to OS."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.HeapReleased) }},
	{memDesc("heap_objects", "Number of currently allocated objects."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.HeapObjects) }},
	{memDesc("stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.StackInuse) }},
	{memDesc("stack_sys_bytes", "Number of bytes obtained from system for stack allocator."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.StackSys) }},
	{memDesc("mspan_inuse_bytes", "Number of bytes in use by mspan structures."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.MSpanInuse) }},
	{memDesc("mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.MSpanSys) }},
	{memDesc("mcache_inuse_bytes", "Number of bytes in use by mcache structures."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.MCacheInuse) }},
	{memDesc("mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.MCacheSys) }},
	{memDesc("buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.BuckHashSys) }},
	{memDesc("gc_sys_bytes", "Number of bytes used for garbage collection system metadata."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.GCSys) }},
	{memDesc("other_sys_bytes", "Number of bytes used for other system allocations."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.OtherSys) }},
	{memDesc("next_gc_bytes", "Number of heap bytes when next garbage collection will take place."), GaugeValue, func(m *runtime.MemStats) float64 { return float64(m.NextGC) }},
}

func memDesc(name, help string) *Desc { return NewDesc("go_memstats_"+name, help, nil, nil) }

func (goCollector) Describe(ch chan<- *Desc) {
	for _, d := range []*Desc{goroutinesDesc, threadsDesc, goInfoDesc, gcDesc, lastGCDesc, maxProcsDesc, gogcDesc, memLimitDesc} {
		ch <- d
	}
	for _, m := range memstats {
		ch <- m.desc
	}
}

func (goCollector) Collect(ch chan<- Metric) {
	ch <- MustNewConstMetric(goroutinesDesc, GaugeValue, float64(runtime.NumGoroutine()))
	threads, _ := runtime.ThreadCreateProfile(nil)
	ch <- MustNewConstMetric(threadsDesc, GaugeValue, float64(threads))
	ch <- MustNewConstMetric(goInfoDesc, GaugeValue, 1, runtime.Version())

	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	q := Metric{desc: gcDesc, typ: "summary", bounds: []float64{0, 0.25, 0.5, 0.75, 1}, counts: make([]float64, 5), count: uint64(gc.NumGC), sum: gc.PauseTotal.Seconds()}
	for i, d := range gc.PauseQuantiles {
		q.counts[i] = d.Seconds()
	}
	ch <- q

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ch <- MustNewConstMetric(lastGCDesc, GaugeValue, float64(ms.LastGC)/1e9)
	for _, m := range memstats {
		ch <- MustNewConstMetric(m.desc, m.typ, m.get(&ms))
	}

	samples := []metrics.Sample{{Name: "/sched/gomaxprocs:threads"}, {Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(samples)
	for i, d := range []*Desc{maxProcsDesc, gogcDesc, memLimitDesc} {
		if samples[i].Value.Kind() == metrics.KindUint64 {
			ch <- MustNewConstMetric(d, GaugeValue, float64(samples[i].Value.Uint64()))
		}
	}
}

// NewProcessCollector exposes this process's CPU, memory, file
// descriptors and start time under the names of the Go client's process
// collector (process_*), read from /proc.
func NewProcessCollector() Collector { return processCollector{} }

type processCollector struct{}

var (
	cpuDesc       = NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", nil, nil)
	openFDsDesc   = NewDesc("process_open_fds", "Number of open file descriptors.", nil, nil)
	maxFDsDesc    = NewDesc("process_max_fds", "Maximum number of open file descriptors.", nil, nil)
	vsizeDesc     = NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", nil, nil)
	maxVsizeDesc  = NewDesc("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", nil, nil)
	rssDesc       = NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil, nil)
	startTimeDesc = NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", nil, nil)
)

func (processCollector) Describe(ch chan<- *Desc) {
	for _, d := range []*Desc{cpuDesc, openFDsDesc, maxFDsDesc, vsizeDesc, maxVsizeDesc, rssDesc, startTimeDesc} {
		ch <- d
	}
}

// userHZ is the unit of /proc's CPU times and start time on Linux.
const userHZ = 100

func (processCollector) Collect(ch chan<- Metric) {
	if st, err := readStat(); err != nil {
		ch <- NewInvalidMetric(cpuDesc, err)
	} else {
		ch <- MustNewConstMetric(cpuDesc, CounterValue, float64(st.utime+st.stime)/userHZ)
		ch <- MustNewConstMetric(vsizeDesc, GaugeValue, float64(st.vsize))
		ch <- MustNewConstMetric(rssDesc, GaugeValue, float64(st.rss*int64(os.Getpagesize())))
		if boot, err := bootTime(); err == nil {
			ch <- MustNewConstMetric(startTimeDesc, GaugeValue, float64(boot)+float64(st.start)/userHZ)
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		ch <- MustNewConstMetric(openFDsDesc, GaugeValue, float64(len(fds)-1)) // less the one reading the folder
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		ch <- MustNewConstMetric(maxFDsDesc, GaugeValue, float64(lim.Cur))
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil {
		ch <- MustNewConstMetric(maxVsizeDesc, GaugeValue, float64(lim.Cur)) // unlimited: 2^64-1, as the Go client reports it
	}
}

type procStat struct {
	utime, stime, start uint64
	vsize               uint64
	rss                 int64
}

// readStat reads /proc/self/stat: after the command name's closing
// parenthesis, utime and stime are fields 14 and 15 of the line,
// starttime 22, vsize 23 and rss (pages) 24.
func readStat() (procStat, error) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return procStat{}, errors.New("/proc/self/stat: no command name")
	}
	f := bytes.Fields(raw[i+1:]) // f[0] is field 3, state
	if len(f) < 22 {
		return procStat{}, errors.New("/proc/self/stat: too few fields")
	}
	u := func(n int) uint64 { v, _ := strconv.ParseUint(string(f[n-3]), 10, 64); return v }
	rss, _ := strconv.ParseInt(string(f[24-3]), 10, 64)
	return procStat{utime: u(14), stime: u(15), start: u(22), vsize: u(23), rss: rss}, nil
}

// bootTime is the btime line of /proc/stat: the boot's Unix time.
func bootTime() (int64, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(raw) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			return strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
		}
	}
	return 0, errors.New("/proc/stat: no btime")
}
