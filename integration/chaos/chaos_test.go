package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// opTimeout bounds one libcni operation (a whole chain ADD or DEL); under
// 50 concurrent attachments on two cores one can take seconds.
const opTimeout = 120 * time.Second

// recoveries are what a runtime does after an ADD or DEL failed: DEL with
// the pod netns still there, deleted, or not passed at all, each with and
// without the cached result (the prevResult libcni sends on DEL).
var recoveries = []struct {
	name           string
	netns          string // "present", "deleted", "empty"
	dropCache      bool
	wantPodChecked bool
}{
	{"netns present, prevResult", "present", false, true},
	{"netns present, no prevResult", "present", true, true},
	{"netns deleted, prevResult", "deleted", false, false},
	{"netns deleted, no prevResult", "deleted", true, false},
	{"netns empty, prevResult", "empty", false, false},
	{"netns empty, no prevResult", "empty", true, false},
}

type pod struct {
	ns   *netsim.NS
	gone bool
	rt   chain.RuntimeConf
	ips  []net.IP
}

func (p *pod) attachment() chain.Attachment {
	a := chain.Attachment{RT: p.rt, IPs: p.ips}
	if !p.gone {
		a.Pod = p.ns
	}
	return a
}

// counts is what make chaos prints.
type counts struct {
	Cycles          int            `json:"cycles"`
	CyclesBusy      int            `json:"cyclesUnderConcurrentLoad"`
	KillsArmed      int            `json:"killsArmed"`
	KillsLanded     int            `json:"killsLandedMidOperation"`
	KillsMissed     int            `json:"killsMissedPluginAlreadyDone"`
	ByStage         map[string]int `json:"killsLandedByStageVerb"`
	Recoveries      map[string]int `json:"recoveries"`
	RecoveryRetries int            `json:"recoveryDelRetries"`
	GCs             int            `json:"gcs"`
	Reboots         int            `json:"reboots"`
	UplinkFlaps     int            `json:"uplinkFlaps"`
	FlapAdds        int            `json:"addsDuringFlaps"`
	FlapAddsFailed  int            `json:"addsDuringFlapsFailed"`
	Leaks           int            `json:"leaksFound"`
	KnownOpenBugs   map[string]int `json:"knownOpenBugLeaks"`
	Duplicates      int            `json:"addressesHandedOutTwice"`
	OtherFindings   int            `json:"otherFindings"`
	Seconds         float64        `json:"seconds"`
}

type harness struct {
	t     *testing.T
	lab   *netsim.Lab
	root  string // state root: state/, ipam/
	cache string // libcni cache (survives a node reboot, as /var/lib/cni does)
	bin   string
	k     *killExec

	mu        sync.Mutex
	node      *netsim.Node
	c         *chain.Chain
	rng       *rand.Rand
	holders   map[string]string // address -> container ID, of live attachments
	residents []*pod
	n         counts
	findings  []string
	podSeq    int
	cycleSeq  int
	known     map[string]int // leaks matching knownOpenBugs, by bug
	flapErrs  map[string]int // why ADDs failed during uplink flaps
	backend   string         // sysctl-firewall's backend; "" = the conflist's (auto)
	start     time.Time
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestChaos: the default chain, run through libcni on a lab node, with
// each stage SIGKILLed at random moments of ADD and DEL, on a quiet node
// and under ~50 concurrent ADD/DELs, each followed by one of the runtime's
// recoveries; node reboots (namespace, links, rules and the state dirs
// gone, the libcni cache kept) followed by the runtime's DELs, GC and new
// ADDs; the uplink taken down and up during ADDs. After every cycle the
// leftovers checker finds nothing of the attachment, and at every
// checkpoint (GC with the resident pods as the valid list) nothing on the
// node belongs to a dead attachment, no address is leased twice and the
// resident pods still have their addresses and answer.
//
// VXVRF_CHAOS_CYCLES (default 40, make chaos: 1000) is the number of
// kill-injected cycles, cycles whose kill landed mid-operation; VXVRF_CHAOS_WORKERS (default 50) the concurrency of
// the busy phase; VXVRF_CHAOS_SEED fixes the random choices;
// VXVRF_CHAOS_REPORT names a file for the counts as JSON.
func TestChaos(t *testing.T) {
	testutil.RequireRoot(t)
	cycles := envInt("VXVRF_CHAOS_CYCLES", 40)
	workers := envInt("VXVRF_CHAOS_WORKERS", 50)
	seed := int64(envInt("VXVRF_CHAOS_SEED", int(time.Now().UnixNano()%1e9)))
	reboots := max(1, cycles/250)
	flaps := max(1, cycles/500)
	t.Logf("seed %d (VXVRF_CHAOS_SEED), %d cycles, %d workers, %d reboots, %d uplink-flap rounds", seed, cycles, workers, reboots, flaps)
	start := time.Now()

	h := newHarness(t, seed)
	h.addResidents(6)
	h.checkersSee()
	h.checkpoint("start")

	// Kill-injected cycles (a kill landed mid-operation): a fifth on a
	// quiet node, 10 after each reboot, the rest under concurrent load.
	// Cycles whose kill missed (the plugin had already exited) are
	// counted apart and do not count towards the goal.
	afterReboot := 10
	quiet := cycles / 5
	busy := max(0, cycles-quiet-reboots*afterReboot)
	h.sequential(quiet)
	h.checkpoint("after the quiet cycles")
	h.busy(busy, workers)
	h.checkpoint("after the busy cycles")
	for r := 0; r < reboots; r++ {
		h.reboot()
		h.checkpoint(fmt.Sprintf("after reboot %d", r+1))
		h.sequential(afterReboot)
		h.checkpoint(fmt.Sprintf("after the cycles following reboot %d", r+1))
	}
	for f := 0; f < flaps; f++ {
		h.uplinkFlaps(20)
		h.checkpoint(fmt.Sprintf("after uplink flap round %d", f+1))
	}
	h.teardown()
	h.n.Seconds = time.Since(start).Seconds()
	h.n.KnownOpenBugs = h.known
	h.report()
}

func newHarness(t *testing.T, seed int64) *harness {
	lab, node := testutil.NewNode(t, "chaos")
	h := &harness{
		t:        t,
		lab:      lab,
		root:     t.TempDir(),
		cache:    t.TempDir(),
		bin:      testutil.PluginDir(t, testutil.Plugins...),
		k:        newKillExec(seed),
		node:     node,
		rng:      rand.New(rand.NewSource(seed + 1)),
		holders:  map[string]string{},
		n:        counts{ByStage: map[string]int{}, Recoveries: map[string]int{}},
		start:    time.Now(),
		known:    map[string]int{},
		flapErrs: map[string]int{},
		backend:  os.Getenv("VXVRF_CHAOS_BACKEND"),
	}
	h.c = h.newChain()
	return h
}

// firewallBackend is the backend sysctl-firewall runs with: the one set,
// else auto's choice, nftables on a lab node (a fresh netns: nothing else
// filters forwarded traffic, see the plugin's README "Which backend").
func (h *harness) firewallBackend() string {
	if h.backend == "" || h.backend == "auto" {
		return "nftables"
	}
	return h.backend
}

func (h *harness) newChain() *chain.Chain {
	conf, err := chain.SetStateDirs(testutil.DefaultConflist(h.t), h.root)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.backend != "" {
		conf, err = chain.Edit(conf, func(_ map[string]any, plugins []map[string]any) error {
			chain.Plugin(plugins, "sysctl-firewall")["backend"] = h.backend
			return nil
		})
		if err != nil {
			h.t.Fatal(err)
		}
	}
	list, err := chain.Parse(conf)
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := chain.NewWithExec(list, []string{h.bin}, h.cache, h.node.NetNS, h.k)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) chain() (*chain.Chain, *netsim.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.c, h.node
}

func (h *harness) stateDirs() []string {
	return []string{filepath.Join(h.root, "state"), filepath.Join(h.root, "ipam")}
}

func (h *harness) finding(kind *int, format string, a ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*kind++
	h.findings = append(h.findings, fmt.Sprintf(format, a...))
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

func (h *harness) newPod(prefix string) *pod {
	h.mu.Lock()
	h.podSeq++
	role := fmt.Sprintf("%s%d", prefix, h.podSeq)
	h.mu.Unlock()
	n, err := h.lab.AddNS(role)
	if err != nil {
		h.t.Fatalf("pod netns: %v", err)
	}
	return &pod{ns: n, rt: chain.RuntimeConf{ContainerID: "chaos-" + role, NetNS: n.Path, IfName: "eth0"}}
}

func (h *harness) removePod(p *pod) {
	if p.gone {
		return
	}
	if err := h.lab.Remove(p.ns); err != nil {
		h.t.Errorf("remove %s: %v", p.ns.Name, err)
	}
	p.gone = true
}

// add runs a chain ADD; on success it records the pod's addresses and
// reports any address another live attachment holds.
func (h *harness) add(c *chain.Chain, p *pod) error {
	cx, cancel := ctx()
	defer cancel()
	res, err := c.AddCurrent(cx, p.rt)
	if err != nil {
		return err
	}
	p.ips = nil
	for _, ip := range chain.PodIPs(res, p.rt.NetNS, p.rt.IfName) {
		p.ips = append(p.ips, ip.Address.IP)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ip := range p.ips {
		if other, ok := h.holders[ip.String()]; ok && other != p.rt.ContainerID {
			h.n.Duplicates++
			h.findings = append(h.findings, fmt.Sprintf("%s handed to %s while %s holds it", ip, p.rt.ContainerID, other))
		}
		h.holders[ip.String()] = p.rt.ContainerID
	}
	return nil
}

func (h *harness) release(p *pod) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for a, cid := range h.holders {
		if cid == p.rt.ContainerID {
			delete(h.holders, a)
		}
	}
}

func (h *harness) del(c *chain.Chain, rt chain.RuntimeConf) error {
	cx, cancel := ctx()
	defer cancel()
	return c.Del(cx, rt)
}

// cycle is one kill-injected cycle: stage i%5 is killed during ADD (even
// i/5) or during DEL (odd i/5; the ADD before it is not armed), then the
// runtime recovers with recoveries[(i/10)%6] and the leftovers checker
// must find nothing of the attachment.
func (h *harness) cycle(i int, busy bool) {
	stage := testutil.Plugins[i%len(testutil.Plugins)]
	verb := "ADD"
	if (i/len(testutil.Plugins))%2 == 1 {
		verb = "DEL"
	}
	rec := recoveries[(i/(2*len(testutil.Plugins)))%len(recoveries)]
	c, node := h.chain()
	p := h.newPod("c")
	cid := p.rt.ContainerID
	if verb == "DEL" {
		if err := h.add(c, p); err != nil {
			h.finding(&h.n.OtherFindings, "cycle %d: the unarmed ADD before a DEL kill failed: %v", i, err)
		}
	}
	pl := h.k.arm(cid, stage, verb)
	var err error
	if verb == "ADD" {
		err = h.add(c, p)
	} else if err = h.del(c, p.rt); err == nil {
		h.release(p)
	}
	h.k.disarm(cid)
	h.mu.Lock()
	h.n.Cycles++
	if busy {
		h.n.CyclesBusy++
	}
	if pl.fired {
		h.n.KillsArmed++
	}
	if pl.landed {
		h.n.KillsLanded++
		h.n.ByStage[stage+" "+verb]++
	} else if pl.fired {
		h.n.KillsMissed++
	}
	h.n.Recoveries[rec.name]++
	if h.n.Cycles%100 == 0 {
		fmt.Printf("chaos: %d cycles, kills landed %d, missed %d, leaks %d, duplicates %d, other findings %d, %.0fs\n",
			h.n.Cycles, h.n.KillsLanded, h.n.KillsMissed, h.n.Leaks, h.n.Duplicates, h.n.OtherFindings, time.Since(h.start).Seconds())
	}
	h.mu.Unlock()
	if pl.landed && err == nil {
		h.finding(&h.n.OtherFindings, "cycle %d: %s was killed during %s but the chain %s succeeded", i, stage, verb, verb)
	}

	// The runtime's recovery.
	if rec.dropCache {
		if err := c.DropCache(p.rt); err != nil {
			h.t.Errorf("drop cache: %v", err)
		}
	}
	rt := p.rt
	switch rec.netns {
	case "deleted":
		h.removePod(p)
	case "empty":
		rt.NetNS = ""
	}
	if err := h.del(c, rt); err != nil {
		h.finding(&h.n.OtherFindings, "cycle %d (%s killed in %s, landed=%v): recovery DEL (%s) failed: %v", i, stage, verb, pl.landed, rec.name, err)
		h.mu.Lock()
		h.n.RecoveryRetries++
		h.mu.Unlock()
		if err := h.del(c, rt); err != nil {
			h.finding(&h.n.OtherFindings, "cycle %d: the retried recovery DEL failed too: %v", i, err)
		}
	}
	h.release(p)
	h.leftovers(fmt.Sprintf("cycle %d (%s killed in %s, landed=%v, recovery %s)", i, stage, verb, pl.landed, rec.name), c, node, p,
		&cycleKill{stage: stage, verb: verb, landed: pl.landed})
	h.removePod(p)
}

// leftovers reports what the leftovers checker finds of p. k describes the
// kill of the cycle (nil outside cycles): a leak that matches one of
// knownOpenBugs is counted under that bug and does not fail the test.
func (h *harness) leftovers(what string, c *chain.Chain, node *netsim.Node, p *pod, k *cycleKill) {
	for _, l := range c.Leftovers(node.NS, []chain.Attachment{p.attachment()}, h.stateDirs()...) {
		if !h.knownOr(k, what, l) {
			h.finding(&h.n.Leaks, "%s: left behind: %s", what, l)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// cycleKill is what a cycle killed.
type cycleKill struct {
	stage, verb string
	landed      bool
}

// knownOpenBugs are leaks this suite found that wait for a fix in the
// plugins (see the lead's issue); each matches a stage and verb whose kill
// landed and a leftover line. They are printed and counted, not failed.
var knownOpenBugs = []struct {
	name, stage, verb, line string
	anyCycle                bool // match the line in any check, whatever was killed
}{
	// Empty. The leaks this suite found are fixed: sysctl-firewall's
	// iptables-restore dies with the plugin (Pdeathsig; was writing after
	// the recovery DEL, TestKillDuringIptablesRestore), and lockfile-ipam
	// removes a killed Save's temp file when it takes the lock. Add an
	// entry only for a leak whose fix is tracked elsewhere, e.g.
	// {"sysctl-firewall: orphaned iptables-restore commits rules after the recovery DEL", "sysctl-firewall", "ADD", "iptables", false},
	// {"lockfile-ipam: a killed Save leaves its temp file until the next Save", "lockfile-ipam", "", ".json.tmp-", true},
}

func knownBug(k *cycleKill, leftover string) string {
	for _, b := range knownOpenBugs {
		if !strings.Contains(leftover, b.line) {
			continue
		}
		if b.anyCycle || k != nil && k.landed && k.stage == b.stage && k.verb == b.verb {
			return b.name
		}
	}
	return ""
}

// knownOr counts leftover under its known open bug and reports whether it
// was one.
func (h *harness) knownOr(k *cycleKill, what, leftover string) bool {
	bug := knownBug(k, leftover)
	if bug == "" {
		return false
	}
	h.mu.Lock()
	h.known[bug]++
	h.mu.Unlock()
	fmt.Printf("chaos: known open bug (%s): %s: %s\n", bug, what, firstLine(leftover))
	return true
}

// landed is the number of cycles whose kill landed so far.
func (h *harness) landed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n.KillsLanded
}

// nextCycle is the index of the next cycle (it picks stage, verb and
// recovery).
func (h *harness) nextCycle() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cycleSeq++
	return h.cycleSeq - 1
}

// sequential runs cycles one at a time until n more kills landed.
func (h *harness) sequential(n int) {
	goal := h.landed() + n
	for h.landed() < goal {
		h.cycle(h.nextCycle(), false)
	}
}

// busy runs cycles on workers goroutines at once, so each runs while
// ~workers others ADD and DEL on the node, until n more kills landed.
func (h *harness) busy(n, workers int) {
	goal := h.landed() + n
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h.landed() < goal {
				h.cycle(h.nextCycle(), true)
			}
		}()
	}
	wg.Wait()
}

// addResidents attaches n pods that stay through the cycles: kills, DELs
// and GCs of others must not disturb them.
func (h *harness) addResidents(n int) {
	c, _ := h.chain()
	for i := 0; i < n; i++ {
		p := h.newPod("r")
		if err := h.add(c, p); err != nil {
			h.t.Fatalf("resident ADD: %v", err)
		}
		h.mu.Lock()
		h.residents = append(h.residents, p)
		h.mu.Unlock()
	}
}

// checkersSee proves the checkers can fail: with the residents attached,
// Orphans told that nothing is live and Leftovers asked about a resident
// must report each kind of object they look for, the firewall objects of
// the backend in use.
func (h *harness) checkersSee() {
	c, node := h.chain()
	orphanFw, leftFw := []string{"nftables element"}, "nftables element"
	if h.firewallBackend() == "iptables" {
		orphanFw, leftFw = []string{"iptables chain", "iptables rule tagged"}, "iptables"
	}
	orphans := strings.Join(c.Orphans(node.NS, nil, h.stateDirs()...), "\n")
	for _, want := range append([]string{"host veth", "lease of", "libcni cache entry"}, orphanFw...) {
		if !strings.Contains(orphans, want) {
			h.t.Fatalf("Orphans sees no %q of the attached residents:\n%s", want, orphans)
		}
	}
	left := strings.Join(c.Leftovers(node.NS, []chain.Attachment{h.residents[0].attachment()}, h.stateDirs()...), "\n")
	for _, want := range []string{"host veth", leftFw, "state file", "libcni cache entry", "the pod still has"} {
		if !strings.Contains(left, want) {
			h.t.Fatalf("Leftovers sees no %q of an attached resident:\n%s", want, left)
		}
	}
	if d := chain.DuplicateLeases(h.stateDirs()...); len(d) > 0 {
		h.t.Fatalf("duplicate leases at the start: %v", d)
	}
}

// checkpoint runs the runtime's GC with the residents as the valid list,
// then checks the whole node: nothing of a dead attachment, no address
// leased twice, every resident still holds its addresses and answers.
func (h *harness) checkpoint(what string) {
	c, node := h.chain()
	var valid []types.GCAttachment
	var live []chain.Attachment
	for _, p := range h.residents {
		valid = append(valid, types.GCAttachment{ContainerID: p.rt.ContainerID, IfName: p.rt.IfName})
		live = append(live, p.attachment())
	}
	if valid == nil {
		valid = []types.GCAttachment{}
	}
	cx, cancel := ctx()
	err := c.GC(cx, valid)
	cancel()
	h.mu.Lock()
	h.n.GCs++
	h.mu.Unlock()
	if err != nil {
		h.finding(&h.n.OtherFindings, "%s: GC: %v", what, err)
	}
	for _, l := range c.Orphans(node.NS, live, h.stateDirs()...) {
		if !h.knownOr(nil, what, l) {
			h.finding(&h.n.Leaks, "%s: %s", what, l)
		}
	}
	for _, d := range chain.DuplicateLeases(h.stateDirs()...) {
		h.finding(&h.n.Duplicates, "%s: %s", what, d)
	}
	seen := map[string]string{}
	for _, p := range h.residents {
		out, err := p.ns.In("ip", "-o", "addr", "show", "dev", p.rt.IfName, "scope", "global")
		if err != nil {
			h.finding(&h.n.OtherFindings, "%s: resident %s: %v", what, p.rt.ContainerID, err)
			continue
		}
		for _, ip := range p.ips {
			if !strings.Contains(string(out), " "+ip.String()+"/") {
				h.finding(&h.n.OtherFindings, "%s: resident %s lost %s: %s", what, p.rt.ContainerID, ip, out)
			}
			if other, ok := seen[ip.String()]; ok {
				h.finding(&h.n.Duplicates, "%s: residents %s and %s both have %s", what, other, p.rt.ContainerID, ip)
			}
			seen[ip.String()] = p.rt.ContainerID
			if ip.To4() != nil {
				if _, err := node.In("ping", "-c1", "-W2", ip.String()); err != nil {
					h.finding(&h.n.OtherFindings, "%s: node cannot reach resident %s at %s: %v", what, p.rt.ContainerID, ip, err)
				}
			}
		}
	}
	for _, p := range h.residents {
		cx, cancel := ctx()
		err := c.Check(cx, p.rt)
		cancel()
		if err != nil {
			h.finding(&h.n.OtherFindings, "%s: CHECK of resident %s: %v", what, p.rt.ContainerID, err)
		}
	}
}

// reboot simulates a node reboot: the node namespace (its links, routes,
// rules, sysctls) and every pod are gone, the state dirs (tmpfs) are
// wiped, the libcni cache (disk) stays. The runtime then DELs the
// attachments it knows (netns gone, cached prevResult), GCs with an empty
// list, and new pods are added.
func (h *harness) reboot() {
	h.mu.Lock()
	old := h.residents
	h.residents = nil
	oldNode := h.node
	h.mu.Unlock()
	for _, p := range old {
		h.removePod(p)
	}
	if err := h.lab.Remove(oldNode.NS); err != nil {
		h.t.Fatalf("reboot: remove node: %v", err)
	}
	for _, d := range h.stateDirs() {
		if err := os.RemoveAll(d); err != nil {
			h.t.Fatal(err)
		}
	}
	node, err := h.lab.AddNode("n1")
	if err != nil {
		h.t.Fatalf("reboot: node: %v", err)
	}
	h.mu.Lock()
	h.node = node
	h.n.Reboots++
	h.mu.Unlock()
	c := h.newChain()
	h.mu.Lock()
	h.c = c
	h.mu.Unlock()
	for _, p := range old {
		if err := h.del(c, p.rt); err != nil {
			h.finding(&h.n.OtherFindings, "after reboot: DEL of %s (netns gone, cached prevResult): %v", p.rt.ContainerID, err)
		}
		h.release(p)
	}
	cx, cancel := ctx()
	if err := c.GC(cx, []types.GCAttachment{}); err != nil {
		h.finding(&h.n.OtherFindings, "after reboot: GC: %v", err)
	}
	cancel()
	for _, p := range old {
		h.leftovers("after reboot", c, node, p, nil)
	}
	h.addResidents(6)
}

// uplinkFlaps takes the node's uplink down and up (restoring the default
// route, as the node's network manager would) while n pods are added at
// once. Pods whose ADD failed get the runtime's DEL; the others must
// answer once the uplink is back, then are deleted. Nothing may be left.
func (h *harness) uplinkFlaps(n int) {
	c, node := h.chain()
	stop := make(chan struct{})
	flapped := make(chan int)
	go func() {
		rng := rand.New(rand.NewSource(time.Now().UnixNano()))
		count := 0
		defer func() { flapped <- count }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = node.In("ip", "link", "set", node.Uplink, "down")
			time.Sleep(time.Duration(10+rng.Intn(150)) * time.Millisecond)
			_, _ = node.In("ip", "link", "set", node.Uplink, "up")
			_, _ = node.In("ip", "route", "replace", "default", "via", netsim.UnderlayGateway, "dev", node.Uplink)
			count++
			time.Sleep(time.Duration(10+rng.Intn(200)) * time.Millisecond)
		}
	}()
	pods := make([]*pod, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range pods {
		pods[i] = h.newPod("f")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.add(c, pods[i])
		}()
	}
	wg.Wait()
	close(stop)
	count := <-flapped
	if _, err := node.In("ip", "link", "set", node.Uplink, "up"); err != nil {
		h.t.Fatal(err)
	}
	_, _ = node.In("ip", "route", "replace", "default", "via", netsim.UnderlayGateway, "dev", node.Uplink)
	h.mu.Lock()
	h.n.UplinkFlaps += count
	h.n.FlapAdds += n
	h.mu.Unlock()
	for i, p := range pods {
		if errs[i] != nil {
			h.mu.Lock()
			h.n.FlapAddsFailed++
			msg := errs[i].Error()
			if len(msg) > 160 {
				msg = msg[:160]
			}
			h.flapErrs[msg]++
			h.mu.Unlock()
		} else {
			for _, ip := range p.ips {
				if ip.To4() != nil {
					if _, err := node.In("ping", "-c1", "-W2", ip.String()); err != nil {
						h.finding(&h.n.OtherFindings, "uplink flaps: pod %s added during the flaps does not answer at %s", p.rt.ContainerID, ip)
					}
				}
			}
		}
		if err := h.del(c, p.rt); err != nil {
			h.finding(&h.n.OtherFindings, "uplink flaps: DEL %s (ADD error %v): %v", p.rt.ContainerID, errs[i], err)
		}
		h.release(p)
		h.leftovers("uplink flaps", c, node, p, nil)
		h.removePod(p)
	}
}

// teardown DELs the residents and GCs with an empty list: nothing of the
// network may remain.
func (h *harness) teardown() {
	c, node := h.chain()
	for _, p := range h.residents {
		if err := h.del(c, p.rt); err != nil {
			h.finding(&h.n.OtherFindings, "teardown: DEL %s: %v", p.rt.ContainerID, err)
		}
		h.release(p)
		h.leftovers("teardown", c, node, p, nil)
		h.removePod(p)
	}
	h.residents = nil
	cx, cancel := ctx()
	defer cancel()
	if err := c.GC(cx, []types.GCAttachment{}); err != nil {
		h.finding(&h.n.OtherFindings, "teardown: GC: %v", err)
	}
	for _, l := range c.Orphans(node.NS, nil, h.stateDirs()...) {
		if !h.knownOr(nil, "teardown", l) {
			h.finding(&h.n.Leaks, "teardown: %s", l)
		}
	}
	for _, l := range c.NetworkLeftovers(node.NS) {
		h.finding(&h.n.Leaks, "teardown: after GC with an empty list: %s", l)
	}
}

// report prints the counts and fails the test on any finding.
func (h *harness) report() {
	table, _ := h.k.report()
	b, _ := json.MarshalIndent(h.n, "", "  ")
	fmt.Printf("\nchaos: %d kill-injected cycles (the kill landed mid-operation) in %d cycles run (%d under ~50 concurrent ADD/DELs); kills armed %d, landed %d, missed (plugin already exited) %d\n",
		h.n.KillsLanded, h.n.Cycles, h.n.CyclesBusy, h.n.KillsArmed, h.n.KillsLanded, h.n.KillsMissed)
	fmt.Printf("chaos: reboots %d, uplink flaps %d during %d ADDs (%d failed, all recovered by DEL), GCs %d\n",
		h.n.Reboots, h.n.UplinkFlaps, h.n.FlapAdds, h.n.FlapAddsFailed, h.n.GCs)
	fmt.Printf("chaos: leaks found = %d, addresses handed out twice = %d, other findings = %d, %.0fs\n",
		h.n.Leaks, h.n.Duplicates, h.n.OtherFindings, h.n.Seconds)
	for msg, n := range h.flapErrs {
		fmt.Printf("chaos: %d ADDs during uplink flaps failed with: %s\n", n, msg)
	}
	for bug, n := range h.known {
		fmt.Printf("chaos: NOT counted above, known open bug seen %d times: %s\n", n, bug)
	}
	fmt.Printf("chaos: kills per stage and verb (landed = the plugin died of SIGKILL; afterOut = it had already printed):\n%s", table)
	fmt.Printf("chaos: counts %s\n", b)
	if path := os.Getenv("VXVRF_CHAOS_REPORT"); path != "" {
		_ = os.WriteFile(path, b, 0o644)
	}
	for i, f := range h.findings {
		if i == 60 {
			h.t.Errorf("... and %d more findings", len(h.findings)-i)
			break
		}
		h.t.Error(f)
	}
}
