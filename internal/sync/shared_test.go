package sync

import (
	"reflect"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// A service that runs in another's container (network_mode service:vpn)
// is recreated after that one gets a new container, instead of started or
// left running in a namespace whose owner is gone; one that only depends
// on it is not.
func TestPlanRecreatesServicesSharingARecreatedContainer(t *testing.T) {
	vpn := service("s", "vpn", "hv", 1)
	app := service("s", "app", "ha", 2)
	app.DependsOn, app.Shares = []string{"vpn"}, []string{"vpn"}
	web := service("s", "web", "hw", 1)
	web.DependsOn = []string{"vpn"}
	desired := Desired{Stack: "s", Services: []DesiredService{app, vpn, web}}
	vpnUp := running(vpn.Specs[0], vpn, 1, "c-vpn")
	apps := []engine.Container{running(app.Specs[0], app, 1, "c-a1"), running(app.Specs[1], app, 2, "c-a2")}
	webUp := running(web.Specs[0], web, 1, "c-web")

	plan, err := MakePlan(desired, Observed{Containers: []engine.Container{vpnUp, apps[0], apps[1], webUp}})
	if err != nil || !plan.Empty() {
		t.Fatalf("nothing changed: %v %v", kinds(plan), err)
	}

	changed := vpnUp
	changed.ConfigHash = "old"
	stopped := apps[1]
	stopped.State = "exited"
	plan, _ = MakePlan(desired, Observed{Containers: []engine.Container{changed, apps[0], stopped, webUp}})
	want := []string{"recreate vpn#1", "recreate app#1", "recreate app#2"}
	if got := kinds(plan); !reflect.DeepEqual(got, want) {
		t.Fatalf("vpn recreated: plan %v, want %v", got, want)
	}
	if r := plan.Actions[1].Reasons; len(r) != 1 || r[0] != "vpn got a new container, which this one shares" {
		t.Errorf("reasons %q", r)
	}

	// vpn missing: it is created, and app (whose hash then differs too) is
	// recreated once, not twice.
	app.ConfigHash = "resolved-to-a-name"
	desired.Services[0] = app
	plan, _ = MakePlan(desired, Observed{Containers: []engine.Container{apps[0], apps[1], webUp}})
	want = []string{"create vpn#1", "recreate app#1", "recreate app#2"}
	if got := kinds(plan); !reflect.DeepEqual(got, want) {
		t.Fatalf("vpn missing: plan %v, want %v", got, want)
	}
}

// References to other services' containers are rewritten as docker compose
// v2.40.3 rewrites them before hashing (the ID of the service's first
// container; volumes_from modes dropped), and the created container keeps
// a volumes_from mode.
func TestResolveShared(t *testing.T) {
	p := &types.Project{Name: "s", Services: types.Services{
		"vpn": {Name: "vpn"},
		"db":  {Name: "db"},
		"app": {Name: "app", NetworkMode: "service:vpn", Ipc: "service:vpn", Pid: "host",
			VolumesFrom: []string{"vpn:ro", "db", "container:legacy:rw", "container:other"}},
	}}
	observed := []engine.Container{
		{ID: "parked", Name: "abc_s-vpn-1", Service: "vpn", Number: 1, State: "exited"},
		{ID: "vpn-2", Name: "s-vpn-2", Service: "vpn", Number: 2, State: "running"},
		{ID: "vpn-1", Name: "s-vpn-1", Service: "vpn", Number: 1, State: "running"},
	}
	forHash, forSpec := resolveShared(p, p.Services["app"], observed)
	if forHash.NetworkMode != "container:vpn-1" || forHash.Ipc != "container:vpn-1" || forHash.Pid != "host" {
		t.Errorf("namespaces: %q %q %q", forHash.NetworkMode, forHash.Ipc, forHash.Pid)
	}
	if want := []string{"vpn-1", "s-db-1", "legacy", "other"}; !reflect.DeepEqual(forHash.VolumesFrom, want) {
		t.Errorf("hashed volumes_from %q, want %q", forHash.VolumesFrom, want)
	}
	if want := []string{"vpn-1:ro", "s-db-1", "legacy:rw", "other"}; !reflect.DeepEqual(forSpec.VolumesFrom, want) {
		t.Errorf("created volumes_from %q, want %q", forSpec.VolumesFrom, want)
	}
	if forSpec.NetworkMode != forHash.NetworkMode {
		t.Errorf("spec network_mode %q", forSpec.NetworkMode)
	}
	if got := sharedServices(p.Services["app"]); !reflect.DeepEqual(got, []string{"db", "vpn"}) {
		t.Errorf("shared services %q", got)
	}
	// The project's own service is untouched.
	if p.Services["app"].VolumesFrom[0] != "vpn:ro" {
		t.Errorf("resolveShared changed the project: %q", p.Services["app"].VolumesFrom)
	}
	plain := types.ServiceConfig{Name: "web", NetworkMode: "host"}
	if h, s := resolveShared(p, plain, observed); !reflect.DeepEqual(h, plain) || !reflect.DeepEqual(s, plain) {
		t.Errorf("a service sharing nothing changed: %+v %+v", h, s)
	}
}
