// Package agent is vxvrf-agent: it follows the cluster through the
// Kubernetes API (client-go informers, no polling of its own) and keeps this
// node's CNI setup in step with it:
//
//   - it installs the plugin binaries (atomically, like vxvrf-installer);
//   - it renders this node's conflist from the cluster config (the
//     ConfigMap) and the Nodes: this node's spec.podCIDRs become its IPAM
//     ranges, every node's InternalIP of the underlay family (or its
//     vxvrf.io/vtep-address annotation) its VTEP address, and, for a VXLAN
//     in remotes mode, the other nodes' addresses its flood list. Nothing is
//     written until all of this node's values are known, so the kubelet
//     keeps the node NotReady until the network can really be set up;
//   - it keeps the flood list (all-zero FDB entries) of the existing VXLAN
//     device equal to the rendered remotes, so a node that joins, leaves
//     or changes its address is reached (or forgotten) without any pod ADD.
//
// It reconciles on start and on every relevant change (Nodes, the cluster
// config file, the VXLAN device appearing or its flood entries changing),
// so it can be killed and restarted at any moment.
package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vxvrf/cni/deploy/internal/install"
	"github.com/vxvrf/cni/pkg/vxlanfdb"
)

// Config says where the agent's inputs and outputs are.
type Config struct {
	// NodeName is this node's name (the DaemonSet passes spec.nodeName).
	NodeName string
	// Install holds the binary source and target directories and the
	// cluster config file (Install.Config, required).
	Install install.Options
	// Family is the underlay family, "ipv4" or "ipv6"; "" takes the family
	// of this node's first InternalIP.
	Family string
	// Resync makes the informer replay every Node this often (0: never);
	// every replay is one more reconcile.
	Resync time.Duration
	// Logf logs; nil: silent.
	Logf func(format string, args ...any)
}

// Status is what the health endpoints report.
type Status struct {
	// Synced: the Node informer has its initial list.
	Synced bool `json:"synced"`
	// Ready: the last reconcile rendered the conflist and programmed every
	// flood list without error.
	Ready bool `json:"ready"`
	// Err is the last reconcile's error, if any.
	Err string `json:"error,omitempty"`
	// Conflist is the path written.
	Conflist string `json:"conflist,omitempty"`
	// Flood maps each remotes-mode VXLAN device to its peers.
	Flood map[string][]string `json:"flood,omitempty"`
	// Reconciles counts finished reconciles; LastReconcile is the last one's time.
	Reconciles    int       `json:"reconciles"`
	LastReconcile time.Time `json:"lastReconcile"`
	// Busy is when the running reconcile started (zero when idle).
	Busy time.Time `json:"busy,omitzero"`
}

// Agent is one node's agent.
type Agent struct {
	cfg    Config
	client kubernetes.Interface
	nodes  corelisters.NodeLister
	queue  workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	status  Status
	devices []string // VXLAN devices of the last rendered conflist
}

// New makes an agent talking to client.
func New(cfg Config, client kubernetes.Interface) (*Agent, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node name unknown: set NODE_NAME or --node-name")
	}
	if cfg.Install.Config == "" {
		return nil, errors.New("the agent needs the cluster config (--config)")
	}
	switch cfg.Family {
	case "", "ipv4", "ipv6":
	default:
		return nil, fmt.Errorf("underlay family %q: want ipv4 or ipv6", cfg.Family)
	}
	return &Agent{cfg: cfg, client: client}, nil
}

func (a *Agent) logf(format string, args ...any) {
	if a.cfg.Logf != nil {
		a.cfg.Logf(format, args...)
	}
}

// Status returns a copy of the current status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Flood = map[string][]string{}
	for k, v := range a.status.Flood {
		s.Flood[k] = slices.Clone(v)
	}
	return s
}

// the only work item: everything is reconciled in one pass.
const key = "node"

// Run follows the cluster until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "vxvrf-agent"})
	defer a.queue.ShutDown()

	factory := informers.NewSharedInformerFactory(a.client, a.cfg.Resync)
	inf := factory.Core().V1().Nodes()
	a.nodes = inf.Lister()
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { a.queue.Add(key) },
		UpdateFunc: func(o, n any) {
			on, ok1 := o.(*corev1.Node)
			nn, ok2 := n.(*corev1.Node)
			if !ok1 || !ok2 || nodeRelevant(on, nn) || on.ResourceVersion == nn.ResourceVersion {
				a.queue.Add(key)
			}
		},
		DeleteFunc: func(any) { a.queue.Add(key) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	a.logf("waiting for the Node list from the API server")
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	a.mu.Lock()
	a.status.Synced = true
	a.mu.Unlock()
	a.logf("Node list synced")

	go a.watchConfig(ctx)
	go a.watchLinks(ctx)
	a.queue.Add(key)
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for a.processNext(ctx) {
	}
	return nil
}

func (a *Agent) processNext(ctx context.Context) bool {
	k, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(k)
	a.mu.Lock()
	a.status.Busy = time.Now()
	a.mu.Unlock()
	err := a.Reconcile(ctx)
	a.mu.Lock()
	a.status.Busy = time.Time{}
	a.status.Reconciles++
	a.status.LastReconcile = time.Now()
	if err != nil {
		if a.status.Err != err.Error() {
			a.logf("not ready: %v", err)
		}
		a.status.Err = err.Error()
		a.status.Ready = false
	} else {
		if a.status.Err != "" || !a.status.Ready {
			a.logf("ready: %s rendered for node %s", a.status.Conflist, a.cfg.NodeName)
		}
		a.status.Err = ""
		a.status.Ready = true
	}
	a.mu.Unlock()
	if err != nil {
		a.queue.AddRateLimited(k)
	} else {
		a.queue.Forget(k)
	}
	return true
}

// Reconcile renders and writes the conflist, then makes the flood list of
// every existing remotes-mode VXLAN device equal to the rendered remotes.
func (a *Agent) Reconcile(ctx context.Context) error {
	o := &a.cfg.Install
	data, err := os.ReadFile(o.Config)
	if err != nil {
		return fmt.Errorf("read cluster config: %w", err)
	}
	c, err := install.ParseCluster(data)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Config, err)
	}
	nodes, err := a.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	merged, skipped, err := clusterFromAPI(c, nodes, a.cfg.NodeName, a.cfg.Family)
	if err != nil {
		return err
	}
	for _, s := range skipped {
		a.logf("peer left out until it has an address: %s", s)
	}
	v, err := merged.Resolve(install.Local{Name: a.cfg.NodeName}, nil)
	if err != nil {
		return err
	}
	out, err := install.Render(merged, v)
	if err != nil {
		return err
	}
	specs, err := floodSpecs(out)
	if err != nil {
		return err
	}
	// Binaries before the conflist: a runtime never sees a conflist whose
	// plugins are missing.
	if _, err := o.InstallBinaries(); err != nil {
		return err
	}
	path, _, err := o.WriteConflist(filepath.Join(o.ConfDirPath(), merged.ConflistName), out)
	if err != nil {
		return err
	}
	flood := map[string][]string{}
	var devices []string
	var errs []error
	for _, s := range specs {
		devices = append(devices, s.Device)
		peers := make([]string, 0, len(s.Peers))
		for _, p := range s.Peers {
			peers = append(peers, p.String())
		}
		flood[s.Device] = peers
		if err := a.syncFlood(s); err != nil {
			errs = append(errs, err)
		}
	}
	a.mu.Lock()
	a.status.Conflist = path
	a.status.Flood = flood
	a.devices = devices
	a.mu.Unlock()
	return errors.Join(errs...)
}

// syncFlood programs one device's flood list; a device that does not exist
// yet is fine: the first pod ADD creates it from the conflist just written
// (and the link watch reconciles again when it appears).
func (a *Agent) syncFlood(s floodSpec) error {
	l, err := netlinksafe.LinkByName(s.Device)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", s.Device, err)
	}
	if l.Type() != "vxlan" {
		return fmt.Errorf("%s is a %s device, not a vxlan", s.Device, l.Type())
	}
	added, removed, err := vxlanfdb.Sync(l, s.Peers)
	if len(added) > 0 || len(removed) > 0 {
		a.logf("%s flood list: added %v, removed %v", s.Device, added, removed)
	}
	return err
}

// watchLinks reconciles when a VXLAN device of the conflist appears, or
// when an FDB entry of one changes (a pod ADD that read an older conflist
// may have set its own list; the agent puts the current one back).
func (a *Agent) watchLinks(ctx context.Context) {
	for ctx.Err() == nil {
		links := make(chan netlink.LinkUpdate, 64)
		neighs := make(chan netlink.NeighUpdate, 256)
		done := make(chan struct{})
		errc := make(chan error, 2)
		onErr := func(err error) { errc <- err }
		err1 := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr})
		err2 := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr})
		if err := errors.Join(err1, err2); err != nil {
			close(done)
			a.logf("netlink subscribe: %v (retrying)", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			continue
		}
		a.queue.Add(key) // anything missed while not subscribed
	loop:
		for {
			select {
			case <-ctx.Done():
				close(done)
				return
			case err := <-errc:
				a.logf("netlink subscription: %v (resubscribing)", err)
				break loop
			case u, ok := <-links:
				if !ok {
					break loop
				}
				if a.isDevice(u.Attrs().Name) {
					a.queue.Add(key)
				}
			case u, ok := <-neighs:
				if !ok {
					break loop
				}
				if len(u.HardwareAddr) == 6 && strings.Trim(u.HardwareAddr.String(), "0:") == "" {
					if l, err := netlink.LinkByIndex(u.LinkIndex); err == nil && a.isDevice(l.Attrs().Name) {
						a.queue.Add(key)
					}
				}
			}
		}
		close(done)
	}
}

func (a *Agent) isDevice(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.devices, name)
}
