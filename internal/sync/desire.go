package sync

import (
	"fmt"
	"sort"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/stack"
)

// Desire resolves a loaded stack into the containers it wants, given the
// images the image phase prepared (PrepareImages) and, for services that
// run in another's container (shared.go), the containers running now: the
// config hash of each service and one container spec per replica. It
// changes nothing and asks no one.
func (r *Reconciler) Desire(st *stack.Stack, revision string, images Images, running []engine.Container) (Desired, error) {
	d := Desired{Stack: st.Name, Revision: revision}
	p := st.Project
	waitedFor := dependencyConditions(p)
	for _, name := range p.ServiceNames() {
		ds, err := r.desireService(st, revision, p.Services[name], images[name], waitedFor, running)
		if err != nil {
			return d, err
		}
		d.Services = append(d.Services, ds)
	}
	for key := range usedNetworks(p) {
		if n, ok := p.Networks[key]; ok && bool(n.External) {
			continue // not ours to create: the image phase checked it exists
		}
		d.Networks = append(d.Networks, key)
	}
	sort.Strings(d.Networks)
	for key, v := range p.Volumes {
		if bool(v.External) {
			continue
		}
		d.Volumes = append(d.Volumes, key)
	}
	sort.Strings(d.Volumes)
	return d, nil
}

// usedNetworks is the set of network keys p's services join.
func usedNetworks(p *types.Project) map[string]bool {
	used := map[string]bool{}
	for _, svc := range p.Services {
		for key := range svc.Networks {
			used[key] = true
		}
	}
	return used
}

// desireService is one service of st resolved into the containers it
// wants, its references to other services' containers (see shared.go)
// resolved against running.
func (r *Reconciler) desireService(st *stack.Stack, revision string, svc types.ServiceConfig, imageID string, waitedFor map[string]map[string]bool, running []engine.Container) (DesiredService, error) {
	p, name := st.Project, svc.Name
	hashSvc, specSvc := resolveShared(p, svc, running)
	specSvc = readOnlyCheckoutBinds(specSvc, p.WorkingDir, st.Dir, r.CheckoutDirs)
	hash, err := stack.ServiceHash(hashSvc)
	if err != nil {
		return DesiredService{}, fmt.Errorf("service %s: config hash: %w", name, err)
	}
	ds := DesiredService{Name: name, ConfigHash: hash, ImageID: imageID, DependsOn: svc.GetDependencies(), Gate: health.GateFor(svc), Shares: sharedServices(svc)}
	var update, rollback *types.UpdateConfig
	if svc.Deploy != nil {
		update, rollback = svc.Deploy.UpdateConfig, svc.Deploy.RollbackConfig
	}
	if ds.Roll, err = rollConfig(svc, update, FailureRollback); err != nil {
		return ds, fmt.Errorf("service %s: deploy.update_config: %w", name, err)
	}
	if ds.RollbackRoll, err = rollConfig(svc, rollback, FailurePause); err != nil {
		return ds, fmt.Errorf("service %s: deploy.rollback_config: %w", name, err)
	}
	if ds.RollbackRoll.FailureAction == FailureRollback {
		// A rollback that fails has nothing further back to go to.
		ds.RollbackRoll.FailureAction = FailurePause
	}
	ds.OneShot = waitedFor[name][types.ServiceConditionCompletedSuccessfully]
	ds.Gate.Completes = ds.OneShot
	ds.Gate.RequireHealthcheck = waitedFor[name][types.ServiceConditionHealthy]
	for dep, cfg := range svc.DependsOn {
		if cfg.Restart {
			ds.RestartWith = append(ds.RestartWith, dep)
		}
	}
	sort.Strings(ds.RestartWith)
	labels := map[string]string{engine.LabelStack: st.Name, engine.LabelRevision: revision}
	files, err := engine.FilesDigest(p, svc, r.FilesKey)
	if err != nil {
		return ds, fmt.Errorf("service %s: %w", name, err)
	}
	if ds.OneShot {
		labels[engine.LabelOneShot] = "true"
	}
	if files != "" {
		labels[engine.LabelFiles] = files
	}
	// A service that only builds runs the image compose would tag; the
	// hash above is of the service as written, as compose hashes it.
	specSvc.Image = ImageName(p.Name, svc)
	for n := 1; n <= svc.GetScale(); n++ {
		spec, err := engine.ServiceSpec(p, specSvc, n, hash, imageID, labels)
		if err != nil {
			return ds, fmt.Errorf("service %s: %w", name, err)
		}
		ds.Specs = append(ds.Specs, spec)
	}
	return ds, nil
}

// dependencyConditions says, per service, which depends_on conditions other
// services of the project wait for it with.
func dependencyConditions(p *types.Project) map[string]map[string]bool {
	waited := map[string]map[string]bool{}
	for _, svc := range p.Services {
		for dep, cfg := range svc.DependsOn {
			if waited[dep] == nil {
				waited[dep] = map[string]bool{}
			}
			waited[dep][cfg.Condition] = true
		}
	}
	return waited
}
