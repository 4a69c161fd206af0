package sync

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// The planner is a pure function: these tests build desired services and
// observed containers by hand, no Docker involved.

func spec(stack, service string, number int, env ...string) engine.ContainerSpec {
	name := fmt.Sprintf("%s-%s-%d", stack, service, number)
	return engine.ContainerSpec{
		Name: name,
		Config: &container.Config{
			Image: "app:1",
			Env:   env,
			Labels: map[string]string{
				engine.LabelProject: stack, engine.LabelService: service,
				engine.LabelContainerNumber: fmt.Sprint(number),
			},
		},
		HostConfig: &container.HostConfig{},
		Networking: &network.NetworkingConfig{},
	}
}

func service(stack, name, hash string, replicas int, env ...string) DesiredService {
	s := DesiredService{Name: name, ConfigHash: hash, ImageID: "sha256:img"}
	for n := 1; n <= replicas; n++ {
		s.Specs = append(s.Specs, spec(stack, name, n, env...))
	}
	return s
}

// running is the container that an engine would report for spec s: the
// inspect mirrors the spec, so only what a test changes differs.
func running(s engine.ContainerSpec, svc DesiredService, number int, id string) engine.Container {
	cfg := *s.Config
	return engine.Container{
		ID: id, Name: s.Name, Project: s.Config.Labels[engine.LabelProject], Service: svc.Name,
		Number: number, ConfigHash: svc.ConfigHash, ImageID: svc.ImageID, Image: cfg.Image,
		State: "running", Labels: cfg.Labels,
		Inspect: container.InspectResponse{
			ID: id, Name: "/" + s.Name, Image: svc.ImageID, Config: &cfg, HostConfig: s.HostConfig,
			State: &container.State{Status: "running", Running: true},
		},
	}
}

func kinds(p Plan) []string {
	var out []string
	for _, a := range p.Actions {
		k := string(a.Kind)
		switch {
		case a.Service != "":
			k += fmt.Sprintf(" %s#%d", a.Service, a.Number)
		case a.Key != "":
			k += " " + a.Key
		}
		out = append(out, k)
	}
	return out
}

func TestMakePlan(t *testing.T) {
	web := service("s", "web", "h1", 1, "VERSION=1")
	web2 := service("s", "web", "h1", 2, "VERSION=1")
	db := service("s", "db", "hdb", 1)
	web.DependsOn = []string{"db"}
	webRunning := running(web.Specs[0], web, 1, "c-web")
	dbRunning := running(db.Specs[0], db, 1, "c-db")
	net := engine.Network{ID: "n1", Name: "s_default", Project: "s", Key: "default", Managed: true}
	vol := engine.Volume{Name: "s_data", Project: "s", Key: "data"}

	changedHash := webRunning
	changedHash.ConfigHash = "old"
	stopped := webRunning
	stopped.State = "exited"
	handEdited := webRunning
	cfg := *handEdited.Inspect.Config
	cfg.Env = []string{"VERSION=by-hand"}
	handEdited.Inspect.Config = &cfg
	newImage := webRunning
	newImage.ImageID = "sha256:older"
	restarting := webRunning
	restarting.State = "restarting"
	paused := webRunning
	paused.State = "paused"
	removing := webRunning
	removing.State = "removing"
	parked := running(web.Specs[0], web, 1, "c-parked")
	parked.Name = "c-web12345_s-web-1"
	parked.State = "exited"

	tests := []struct {
		name     string
		desired  Desired
		observed Observed
		want     []string
		orphans  []string
	}{
		{
			name:    "create from nothing, dependencies first",
			desired: Desired{Stack: "s", Services: []DesiredService{web, db}, Networks: []string{"default"}, Volumes: []string{"data"}},
			want:    []string{"create-network default", "create-volume data", "create db#1", "create web#1"},
		},
		{
			name:     "no-op when everything matches",
			desired:  Desired{Stack: "s", Services: []DesiredService{web, db}, Networks: []string{"default"}, Volumes: []string{"data"}},
			observed: Observed{Containers: []engine.Container{webRunning, dbRunning}, Networks: []engine.Network{net}, Volumes: []engine.Volume{vol}},
			want:     nil,
		},
		{
			name:     "recreate on a changed config hash",
			desired:  Desired{Stack: "s", Services: []DesiredService{web, db}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{changedHash, dbRunning}, Networks: []engine.Network{net}},
			want:     []string{"recreate web#1"},
		},
		{
			name:     "recreate a container changed by hand under the same hash",
			desired:  Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{handEdited}, Networks: []engine.Network{net}},
			want:     []string{"recreate web#1"},
		},
		{
			name:     "recreate when the image moved",
			desired:  Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{newImage}, Networks: []engine.Network{net}},
			want:     []string{"recreate web#1"},
		},
		{
			name:     "start a stopped container",
			desired:  Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{stopped}, Networks: []engine.Network{net}},
			want:     []string{"start web#1"},
		},
		{
			name:     "a container Docker is restarting by its restart policy is left to Docker",
			desired:  Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{restarting}, Networks: []engine.Network{net}},
			want:     nil,
		},
		{
			name:     "a container being removed is waited for, not started nor replaced",
			desired:  Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{removing}, Networks: []engine.Network{net}},
			want:     nil,
		},
		{
			name:     "unpause a paused container",
			desired:  Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{paused}, Networks: []engine.Network{net}},
			want:     []string{"unpause web#1"},
		},
		{
			name:     "scale up",
			desired:  Desired{Stack: "s", Services: []DesiredService{web2}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{running(web2.Specs[0], web2, 1, "c1")}, Networks: []engine.Network{net}},
			want:     []string{"create web#2"},
		},
		{
			name:    "scale down removes the highest numbers",
			desired: Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{
				running(web2.Specs[0], web, 1, "c1"), running(web2.Specs[1], web, 2, "c2"), running(spec("s", "web", 3, "VERSION=1"), web, 3, "c3"),
			}, Networks: []engine.Network{net}},
			want: []string{"remove web#3", "remove web#2"},
		},
		{
			name:     "a service that left is removed, before the others change",
			desired:  Desired{Stack: "s", Services: []DesiredService{db}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{webRunning, changedDB(dbRunning)}, Networks: []engine.Network{net}},
			want:     []string{"remove web#1", "recreate db#1"},
		},
		{
			name:     "removing the whole stack keeps volumes and removes networks last",
			desired:  Desired{Stack: "s"},
			observed: Observed{Containers: []engine.Container{webRunning, dbRunning}, Networks: []engine.Network{net}, Volumes: []engine.Volume{vol}},
			want:     []string{"remove db#1", "remove web#1", "remove-network default"},
			orphans:  []string{"s_data"},
		},
		{
			name:     "a duplicate left by an interrupted recreate is removed",
			desired:  Desired{Stack: "s", Services: []DesiredService{web}, Networks: []string{"default"}},
			observed: Observed{Containers: []engine.Container{parked, webRunning}, Networks: []engine.Network{net}},
			want:     []string{"remove web#1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := MakePlan(tt.desired, tt.observed)
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(plan); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("plan:\n got %v\nwant %v\n%v", got, tt.want, plan.Actions)
			}
			if !reflect.DeepEqual(plan.OrphanVolumes, tt.orphans) {
				t.Fatalf("orphans: got %v want %v", plan.OrphanVolumes, tt.orphans)
			}
			if plan.Empty() != (len(tt.want) == 0) {
				t.Fatalf("Empty() = %v", plan.Empty())
			}
		})
	}
}

func changedDB(c engine.Container) engine.Container {
	c.ConfigHash = "older"
	return c
}

func TestDuplicateRemovalKeepsRunningCanonical(t *testing.T) {
	web := service("s", "web", "h1", 1)
	canonical := running(web.Specs[0], web, 1, "keep")
	parked := running(web.Specs[0], web, 1, "drop")
	parked.Name = "drop12345678_s-web-1"
	parked.State = "exited"
	plan, err := MakePlan(Desired{Stack: "s", Services: []DesiredService{web}}, Observed{Containers: []engine.Container{parked, canonical}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].ID != "drop" {
		t.Fatalf("want only the parked container removed, got %v", plan.Actions)
	}
}

func TestRollCutOffBeforeRenameIsRedone(t *testing.T) {
	web := service("s", "web", "h1", 1)
	// Both running: the canonical old one stays, the half-made one goes.
	old := running(web.Specs[0], web, 1, "old")
	next := running(web.Specs[0], web, 1, "next")
	next.Name = "old_next_s-web-1"
	plan, err := MakePlan(Desired{Stack: "s", Services: []DesiredService{web}}, Observed{Containers: []engine.Container{next, old}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != ActRemove || plan.Actions[0].ID != "next" {
		t.Fatalf("want the unnamed replacement removed, got %v", plan.Actions)
	}
	// Only the replacement is left: it is rolled again to get its name.
	plan, err = MakePlan(Desired{Stack: "s", Services: []DesiredService{web}}, Observed{Containers: []engine.Container{next}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != ActRecreate || !strings.HasPrefix(plan.Actions[0].Reasons[0], "name ") {
		t.Fatalf("want a recreate for the name, got %v", plan.Actions)
	}
}

func TestDependencyCycleIsAnError(t *testing.T) {
	a := service("s", "a", "h", 1)
	b := service("s", "b", "h", 1)
	a.DependsOn, b.DependsOn = []string{"b"}, []string{"a"}
	if _, err := MakePlan(Desired{Stack: "s", Services: []DesiredService{a, b}}, Observed{}); err == nil {
		t.Fatal("want an error for a depends_on cycle")
	}
}

func BenchmarkMakePlan(b *testing.B) {
	// 100 stacks x 5 services, all in sync: the no-op reconcile's planning cost.
	type pair struct {
		d Desired
		o Observed
	}
	var pairs []pair
	for s := 0; s < 100; s++ {
		name := fmt.Sprintf("s%d", s)
		var d Desired
		var o Observed
		d.Stack = name
		for v := 0; v < 5; v++ {
			svc := service(name, fmt.Sprintf("svc%d", v), "h", 1, "A=1", "B=2")
			d.Services = append(d.Services, svc)
			o.Containers = append(o.Containers, running(svc.Specs[0], svc, 1, fmt.Sprintf("c%d-%d", s, v)))
		}
		pairs = append(pairs, pair{d, o})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range pairs {
			if plan, err := MakePlan(p.d, p.o); err != nil || !plan.Empty() {
				b.Fatalf("plan not empty: %v %v", plan.Actions, err)
			}
		}
	}
}

func TestCompletedJobsAndRestartWith(t *testing.T) {
	job := service("s", "migrate", "hj", 1)
	job.OneShot = true
	web := service("s", "web", "hw", 1)
	web.DependsOn = []string{"migrate"}
	worker := service("s", "worker", "hk", 2)
	worker.DependsOn, worker.RestartWith = []string{"web"}, []string{"web"}

	exited := func(c engine.Container, code int) engine.Container {
		c.State = "exited"
		st := *c.Inspect.State
		st.Status, st.Running, st.ExitCode = "exited", false, code
		c.Inspect.State = &st
		return c
	}
	jobDone := exited(running(job.Specs[0], job, 1, "c-job"), 0)
	webUp := running(web.Specs[0], web, 1, "c-web")
	workers := []engine.Container{running(worker.Specs[0], worker, 1, "c-w1"), running(worker.Specs[1], worker, 2, "c-w2")}
	desired := Desired{Stack: "s", Services: []DesiredService{job, web, worker}}

	plan, err := MakePlan(desired, Observed{Containers: append([]engine.Container{jobDone, webUp}, workers...)})
	if err != nil || !plan.Empty() {
		t.Fatalf("a job that completed is done, not down: %v %v", kinds(plan), err)
	}

	failed := exited(running(job.Specs[0], job, 1, "c-job"), 1)
	plan, _ = MakePlan(desired, Observed{Containers: append([]engine.Container{failed, webUp}, workers...)})
	if got := kinds(plan); !reflect.DeepEqual(got, []string{"start migrate#1"}) {
		t.Fatalf("a job that failed runs again: %v", got)
	}

	// web changes: worker, which declares restart: true on it, restarts.
	changed := webUp
	changed.ConfigHash = "old"
	plan, _ = MakePlan(desired, Observed{Containers: append([]engine.Container{jobDone, changed}, workers...)})
	want := []string{"recreate web#1", "restart worker#1", "restart worker#2"}
	if got := kinds(plan); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan %v, want %v", got, want)
	}
	// Without restart: true, worker is left alone.
	worker.RestartWith = nil
	desired.Services[2] = worker
	plan, _ = MakePlan(desired, Observed{Containers: append([]engine.Container{jobDone, changed}, workers...)})
	if got := kinds(plan); !reflect.DeepEqual(got, []string{"recreate web#1"}) {
		t.Fatalf("plan %v", got)
	}
}

func TestNextBatch(t *testing.T) {
	recreate := func(svc string, n int) Action { return Action{Kind: ActRecreate, Service: svc, Number: n} }
	actions := []Action{
		{Kind: ActCreateNetwork, Key: "default"},
		recreate("api", 1), recreate("api", 2), recreate("api", 3),
		recreate("web", 1), recreate("web", 2),
	}
	services := map[string]DesiredService{
		"api": {Name: "api", Roll: RollConfig{Parallelism: 2}},
		"web": {Name: "web", Roll: RollConfig{Parallelism: 0}},
	}
	var sizes []int
	for rest := actions; len(rest) > 0; {
		b := nextBatch(rest, services)
		sizes = append(sizes, len(b))
		rest = rest[len(b):]
	}
	// network alone; api two then one; web (parallelism 0) all at once.
	if want := []int{1, 2, 1, 2}; !reflect.DeepEqual(sizes, want) {
		t.Fatalf("batches %v, want %v", sizes, want)
	}
}

func TestRollConfig(t *testing.T) {
	u64 := func(n uint64) *uint64 { return &n }
	free := types.ServiceConfig{Name: "web"}
	fixed := types.ServiceConfig{Name: "web", Ports: []types.ServicePortConfig{{Target: 80, Published: "8080"}}}
	cases := []struct {
		name string
		svc  types.ServiceConfig
		cfg  *types.UpdateConfig
		want RollConfig
		err  string
	}{
		{"defaults", free, nil, RollConfig{StartFirst: true, Parallelism: 1, FailureAction: FailureRollback}, ""},
		{"a fixed port cannot run twice", fixed, &types.UpdateConfig{Order: "start-first"}, RollConfig{Parallelism: 1, FailureAction: FailureRollback}, ""},
		{"stop-first asked", free, &types.UpdateConfig{Order: "stop-first"}, RollConfig{Parallelism: 1, FailureAction: FailureRollback}, ""},
		{"all at once, paused on failure", free, &types.UpdateConfig{Parallelism: u64(0), FailureAction: "pause", Delay: types.Duration(time.Second)},
			RollConfig{StartFirst: true, Parallelism: 0, Delay: time.Second, FailureAction: FailurePause}, ""},
		{"a shared network namespace cannot hold two", types.ServiceConfig{Name: "app", NetworkMode: "service:vpn"}, &types.UpdateConfig{Order: "start-first"},
			RollConfig{Parallelism: 1, FailureAction: FailureRollback}, ""},
		{"unknown failure_action", free, &types.UpdateConfig{FailureAction: "retry"}, RollConfig{}, `failure_action "retry"`},
	}
	for _, c := range cases {
		got, err := rollConfig(c.svc, c.cfg, FailureRollback)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: want error %q, got %v", c.name, c.err, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

// A container gitopsd made with other secrets or configs is recreated; one
// without the label (made by docker compose, adopted) is not.
func TestPlanRollsChangedSecretsAndConfigs(t *testing.T) {
	want := service("s", "web", "h1", 1)
	want.Specs[0].Config.Labels[engine.LabelFiles] = "new"
	for _, tc := range []struct {
		name, have string
		recreate   bool
	}{
		{"same contents", "new", false},
		{"changed contents", "old", true},
		{"adopted from compose", "", false},
	} {
		c := running(want.Specs[0], want, 1, "c1")
		c.Labels = map[string]string{}
		for k, v := range want.Specs[0].Config.Labels {
			if k != engine.LabelFiles {
				c.Labels[k] = v
			}
		}
		if tc.have != "" {
			c.Labels[engine.LabelFiles] = tc.have
		}
		cfg := *c.Inspect.Config
		cfg.Labels = c.Labels
		c.Inspect.Config = &cfg
		plan, err := MakePlan(Desired{Stack: "s", Services: []DesiredService{want}}, Observed{Containers: []engine.Container{c}})
		if err != nil {
			t.Fatal(err)
		}
		got := len(plan.Actions) == 1 && plan.Actions[0].Kind == ActRecreate && slices.Contains(plan.Actions[0].Reasons, "secrets or configs changed")
		if got != tc.recreate || (!tc.recreate && !plan.Empty()) {
			t.Errorf("%s: plan %v (reasons %v)", tc.name, kinds(plan), plan.Actions)
		}
	}
}
