package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// The nftables backend (netlink through github.com/google/nftables, no
// nft binary). Node-wide objects, created by the first ADD and after
// that only read:
//
//	table inet vxvrf
//	  set fwd4  { type ipv4_addr . ifname }   # pod address . in-device
//	  set fwd6  { type ipv6_addr . ifname }
//	  map masq4 { type ipv4_addr . ifname : verdict }  # -> goto masq-<net>-<rule>
//	  map masq6 { type ipv6_addr . ifname : verdict }
//	  set guard4, guard6 { type ifname }       # routed host veths under anti-spoofing
//	  set allow4 { type ifname . ipv4_addr }   # their allowed sources
//	  set allow6 { type ifname . ipv6_addr }
//	  chain forward     { type filter hook forward priority 0; policy accept }
//	    ip  saddr . iifname @fwd4 accept
//	    ip  daddr . oifname @fwd4 ct state established,related accept   (and ip6 / @fwd6)
//	  chain postrouting { type nat hook postrouting priority 100 }
//	    ip  saddr . iifname vmap @masq4                                   (and ip6 / @masq6)
//	  chain prerouting  { type filter hook prerouting priority -300 }
//	    iifname @guard4 iifname . ip saddr != @allow4 drop
//	    iifname @guard6 ip6 saddr != fe80::/10 ip6 saddr != :: iifname . ip6 saddr != @allow6 drop
//	  chain masq-<net>-<rule>   (one per network, family, subnet and outgoing rule)
//	    ip daddr != SUBNET oifname != BRIDGE masquerade   (or oifname UPLINK)
//	table bridge vxvrf          (anti-spoofing of host veths on a bridge)
//	  sets guard4, guard6, allow4, allow6 as above
//	  chain prerouting  { type filter hook prerouting priority -200 }
//	    the same two rules, matched on the ether type
//
// Per attachment there are only set and map elements, each with the
// comment naming.NftTag(net, cid, ifname): ADD adds them and DEL deletes
// them, each in one netlink transaction, whatever the number of pods.
// The in-device is what the forward and postrouting hooks see as iif: the
// VRF for a bridge in a VRF, else the bridge for a bridged pod, the host
// veth for a routed one; forward elements also carry the out-device (the
// bridge) when it differs, for the established-traffic rule's oif.

// nftSet names one of our sets and its key layout.
type nftSet struct {
	name   string
	keys   []nftables.SetDatatype
	isMap  bool
	bridge bool // in the bridge table (else inet)
}

var (
	setFwd4    = nftSet{name: "fwd4", keys: []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIFName}}
	setFwd6    = nftSet{name: "fwd6", keys: []nftables.SetDatatype{nftables.TypeIP6Addr, nftables.TypeIFName}}
	setMasq4   = nftSet{name: "masq4", keys: []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIFName}, isMap: true}
	setMasq6   = nftSet{name: "masq6", keys: []nftables.SetDatatype{nftables.TypeIP6Addr, nftables.TypeIFName}, isMap: true}
	setGuard4  = nftSet{name: "guard4", keys: []nftables.SetDatatype{nftables.TypeIFName}}
	setGuard6  = nftSet{name: "guard6", keys: []nftables.SetDatatype{nftables.TypeIFName}}
	setAllow4  = nftSet{name: "allow4", keys: []nftables.SetDatatype{nftables.TypeIFName, nftables.TypeIPAddr}}
	setAllow6  = nftSet{name: "allow6", keys: []nftables.SetDatatype{nftables.TypeIFName, nftables.TypeIP6Addr}}
	setBGuard4 = nftSet{name: "guard4", keys: setGuard4.keys, bridge: true}
	setBGuard6 = nftSet{name: "guard6", keys: setGuard6.keys, bridge: true}
	setBAllow4 = nftSet{name: "allow4", keys: setAllow4.keys, bridge: true}
	setBAllow6 = nftSet{name: "allow6", keys: setAllow6.keys, bridge: true}

	// Conntrack zones: per network one element in each, commented
	// naming.NftZoneTag(net), jumping to the network's zone chains.
	setZoneJump    = nftSet{name: "zonejump", keys: []nftables.SetDatatype{nftables.TypeIFName}, isMap: true}
	setMarkJump    = nftSet{name: "markjump", keys: []nftables.SetDatatype{nftables.TypeIFName}, isMap: true}
	setRestoreJump = nftSet{name: "restorejump", keys: []nftables.SetDatatype{nftables.TypeMark}, isMap: true}

	inetSets = []nftSet{setFwd4, setFwd6, setMasq4, setMasq6, setGuard4, setGuard6, setAllow4, setAllow6,
		setZoneJump, setMarkJump, setRestoreJump, setAttach}
	bridgeSets = []nftSet{setBGuard4, setBGuard6, setBAllow4, setBAllow6}
)

var (
	nftInet   = &nftables.Table{Name: naming.NftTable, Family: nftables.TableFamilyINet}
	nftBridge = &nftables.Table{Name: naming.NftTable, Family: nftables.TableFamilyBridge}
)

func (s nftSet) table() *nftables.Table {
	if s.bridge {
		return nftBridge
	}
	return nftInet
}

// is: s and o are the same set.
func (s nftSet) is(o nftSet) bool { return s.name == o.name && s.bridge == o.bridge }

// object is the set as the library wants it (created or referenced).
func (s nftSet) object() *nftables.Set {
	set := &nftables.Set{Table: s.table(), Name: s.name, IsMap: s.isMap, Concatenation: len(s.keys) > 1}
	if len(s.keys) == 1 {
		set.KeyType = s.keys[0]
		// ifname and mark are host-order types: without this, nft shows
		// an interface name as "" and a mark byte-swapped.
		set.KeyByteOrder = binaryutil.NativeEndian
	} else {
		set.KeyType, _ = nftables.ConcatSetType(s.keys...)
	}
	if s.isMap {
		set.DataType = nftables.TypeVerdict
	}
	return set
}

// nftElem is one element of one set.
type nftElem struct {
	set     nftSet
	key     []byte
	verdict string // goto target, maps only
	jump    bool   // verdict is a jump (else goto)
	comment string // "" : the attachment's tag
}

// nftPlan is what the nftables backend makes of a Policy: the
// attachment's elements and the network's masquerade chains they jump to.
type nftPlan struct {
	elems []nftElem
	masq  map[string]masqRule // chain name -> rule
	zone  *nftZone            // the network's conntrack zone, nil: none
}

// nftZone is what a network's conntrack zone needs: its chains.
type nftZone struct {
	zone         int
	mark         uint32
	zoneChain    string // ct original zone set ZONE
	markChain    string // ct mark set ct mark & 0xffff ^ MARK
	restoreChain string // meta mark set meta mark & 0xffff ^ MARK
}

// masqRule is the one rule of a masquerade chain.
type masqRule struct {
	fam    Family
	subnet *net.IPNet // nil: no destination condition
	oif    string     // "" none
	notOif bool       // oif is "!= oif"
}

func (m masqRule) String() string {
	s := fmt.Sprintf("%s %v", m.fam, m.subnet)
	if m.oif != "" {
		if m.notOif {
			s += " !"
		}
		s += " " + m.oif
	}
	return s
}

// planAttachment is the attachment's plan, its index element last, and
// the tag of its elements.
func planAttachment(a attachment, p *Policy) (*nftPlan, string) {
	plan := planNft(a.Network, p)
	if e, ok := indexEntry(a, p); ok {
		plan.elems = append(plan.elems, e)
	}
	return plan, naming.NftTag(a.Network, a.ContainerID, a.IfName)
}

// planNft computes the attachment's elements. Pure (TestPlanNft).

func planNft(network string, p *Policy) *nftPlan {
	out := &nftPlan{masq: map[string]masqRule{}}
	in := p.InDev()
	for _, a := range p.Addrs {
		f := familyOf(a.IP)
		fwd, masq := setFwd4, setMasq4
		if f == V6 {
			fwd, masq = setFwd6, setMasq6
		}
		key := concat(ipBytes(a.IP), ifnameBytes(in))
		out.elems = append(out.elems, nftElem{set: fwd, key: key})
		if o := p.OutDev(); o != in {
			// In a VRF, routed traffic from the pod has the VRF as input
			// device, traffic to it the bridge as output device.
			out.elems = append(out.elems, nftElem{set: fwd, key: concat(ipBytes(a.IP), ifnameBytes(o))})
		}
		if p.Masquerade {
			r := masqRule{fam: f, subnet: a.Subnet}
			switch {
			case p.Uplink != "":
				r.oif = p.Uplink
			case p.Bridge != "":
				r.oif, r.notOif = p.Bridge, true
			}
			chain := naming.NftMasqChain(network, r.String())
			out.masq[chain] = r
			out.elems = append(out.elems, nftElem{set: masq, key: key, verdict: chain})
		}
	}
	if p.Zone != 0 && p.Bridge != "" {
		z := &nftZone{zone: p.Zone, mark: p.Mark & zoneMask,
			zoneChain: naming.NftZoneChain(network, p.Zone), markChain: naming.NftZoneMarkChain(network),
			restoreChain: naming.NftZoneRestoreChain(network)}
		out.zone = z
		tag := naming.NftZoneTag(network)
		mark := make([]byte, 4)
		binary.NativeEndian.PutUint32(mark, z.mark) // ct mark: host byte order
		out.elems = append(out.elems,
			nftElem{set: setZoneJump, key: ifnameBytes(p.Bridge), verdict: z.zoneChain, jump: true, comment: tag},
			nftElem{set: setMarkJump, key: ifnameBytes(p.Bridge), verdict: z.markChain, jump: true, comment: tag},
			nftElem{set: setRestoreJump, key: mark, verdict: z.restoreChain, jump: true, comment: tag},
		)
	}
	if p.Spoofable() {
		for _, f := range p.Families() {
			guard, allow := setGuard4, setAllow4
			switch {
			case f == V6 && p.Bridge != "":
				guard, allow = setBGuard6, setBAllow6
			case f == V6:
				guard, allow = setGuard6, setAllow6
			case p.Bridge != "":
				guard, allow = setBGuard4, setBAllow4
			}
			out.elems = append(out.elems, nftElem{set: guard, key: ifnameBytes(p.HostVeth)})
			for _, a := range p.Addrs {
				if familyOf(a.IP) == f {
					out.elems = append(out.elems, nftElem{set: allow, key: concat(ifnameBytes(p.HostVeth), ipBytes(a.IP))})
				}
			}
		}
	}
	return out
}

func ipBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

// ifnameBytes is an interface name as nftables keys hold it: 16 bytes,
// NUL padded.
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// nftBackend is the nftables backend.
type nftBackend struct{}

func newNftBackend() nftBackend { return nftBackend{} }

func (nftBackend) Name() string { return BackendNftables }

func nftConn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables netlink: %w", err)
	}
	return c, nil
}

// Status: nf_tables answers a listing over netlink.
func (nftBackend) Status() error {
	c, err := nftConn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return fmt.Errorf("nf_tables: %w", err)
	}
	return nil
}

// present: one of our tables exists (DEL and GC then look into them).
func (nftBackend) present() bool {
	c, err := nftConn()
	if err != nil {
		return false
	}
	defer c.CloseLasting()
	for _, t := range []*nftables.Table{nftInet, nftBridge} {
		if _, err := c.ListTableOfFamily(t.Name, t.Family); err == nil {
			return true
		}
	}
	return false
}

// holds: the attachment has elements in our tables.
func (nftBackend) holds(a attachment) bool {
	c, err := nftConn()
	if err != nil {
		return false
	}
	defer c.CloseLasting()
	els, _ := attachmentElems(c, a, naming.NftTag(a.Network, a.ContainerID, a.IfName))
	return len(els) > 0
}

// Add sends the attachment's elements in one transaction. When that
// fails (first ADD on the node or of a network: a table, set or
// masquerade chain missing), it sends one transaction that ensures the
// node-wide objects and the network's masquerade chains together with
// the elements. The ensure is idempotent (tables, sets and chains are
// created if missing, our base chains flushed and refilled in the same
// transaction), so concurrent first ADDs need no lock.
func (b nftBackend) Add(a attachment, p *Policy) error {
	plan, tag := planAttachment(a, p)
	stale, err := staleElems(a, plan, tag)
	if err != nil {
		return err
	}
	c, err := nftConn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	queue := func() error {
		if err := deleteElems(c, stale); err != nil {
			return err
		}
		return addElems(c, plan.elems, tag)
	}
	if err := queue(); err != nil {
		return err
	}
	if c.Flush() == nil {
		return nil
	}
	ensure := func() error {
		if plan.zone != nil {
			if err := ensureZoneChain(c, plan.zone.zoneChain, plan.zone.zone); err != nil {
				return err
			}
			if err := replaceZoneElems(c, a.Network, plan.zone.zoneChain); err != nil {
				return err
			}
		}
		ensureBase(c)
		ensureMasq(c, plan.masq)
		ensureZoneMark(c, plan.zone)
		if err := queue(); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: add %s: %w", tag, err)
		}
		return nil
	}
	if plan.zone == nil {
		return ensure()
	}
	// The zone chain's rule goes in a transaction of its own (addZoneRule):
	// concurrent first ADDs of a network serialise on the lock.
	return withLock(ensure)
}

// staleElems is what an earlier ADD of the attachment left that plan
// does not hold. When the attachment's index element differs from plan's
// (a repeated ADD with another policy): that index element, and the
// elements it names that carry the tag and are not in plan. ADD deletes
// them in its transaction before adding plan's, so the index element
// names exactly what DEL must remove.
func staleElems(a attachment, plan *nftPlan, tag string) ([]nftElem, error) {
	g, err := newElemGetter()
	if err != nil {
		return nil, err
	}
	defer g.Close()
	comment, ok, err := g.comment(setAttach, attachmentKey(a))
	if err != nil || !ok || plan.has(nftElem{set: setAttach, key: attachmentKey(a), comment: comment}) {
		return nil, err
	}
	old, err := indexedElems(g, a, tag, comment)
	if err != nil {
		// Unreadable: replace the index element only.
		return []nftElem{{set: setAttach, key: attachmentKey(a)}}, nil
	}
	var out []nftElem
	for _, e := range old {
		if e.set.is(setAttach) || !plan.has(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// has: plan holds an element of e's set with e's key (and, for the index
// element, e's comment).
func (p *nftPlan) has(e nftElem) bool {
	for _, x := range p.elems {
		if x.set.is(e.set) && bytes.Equal(x.key, e.key) && (!e.set.is(setAttach) || x.comment == e.comment) {
			return true
		}
	}
	return false
}

// ensureZoneChain makes sure the zone chain exists and holds its rule
// (created with the rule when missing).
func ensureZoneChain(c *nftables.Conn, name string, zone int) error {
	ch := &nftables.Chain{Name: name, Table: nftInet}
	if _, err := c.ListChain(nftInet, name); err == nil {
		// google/nftables cannot decode the rule's ct expression (a u8
		// direction): an error here means the rule is there.
		if rules, err := c.GetRules(nftInet, ch); err != nil || len(rules) > 0 {
			return nil
		}
	} else {
		c.AddTable(nftInet)
		c.AddChain(ch)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: zone chain %s: %w", name, err)
		}
	}
	return addZoneRule(naming.NftTable, name, uint16(zone))
}

// replaceZoneElems queues the deletion of the network's zone elements (a
// changed zone or mark: they are added again with the new values) and of
// its zone chains other than the ones still named by the new elements.
func replaceZoneElems(c *nftables.Conn, network, zoneChain string) error {
	tag := naming.NftZoneTag(network)
	els, err := elementsOf(c, func(s string) bool { return s == tag })
	if err != nil {
		return err
	}
	if err := deleteElems(c, els); err != nil {
		return err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return err
	}
	old := naming.NftZoneChain(network, 0)
	old = old[:strings.LastIndex(old, "-")+1] // the zone chains' common prefix
	for _, ch := range chains {
		if ch.Table.Name == naming.NftTable && strings.HasPrefix(ch.Name, old) && ch.Name != zoneChain {
			c.FlushChain(ch)
			c.DelChain(ch)
		}
	}
	return nil
}

// ensureZoneMark queues the network's mark and restore chains, flushed
// and refilled.
func ensureZoneMark(c *nftables.Conn, z *nftZone) {
	if z == nil {
		return
	}
	low := binaryutil.NativeEndian.PutUint32(^uint32(zoneMask))
	mark := binaryutil.NativeEndian.PutUint32(z.mark)
	for _, ch := range []struct {
		name string
		load expr.Any
		set  expr.Any
	}{
		{z.markChain, &expr.Ct{Key: expr.CtKeyMARK, Register: reg1}, &expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true}},
		{z.restoreChain, &expr.Meta{Key: expr.MetaKeyMARK, Register: reg1}, &expr.Meta{Key: expr.MetaKeyMARK, Register: reg1, SourceRegister: true}},
	} {
		chain := c.AddChain(&nftables.Chain{Name: ch.name, Table: nftInet})
		c.FlushChain(chain)
		c.AddRule(&nftables.Rule{Table: nftInet, Chain: chain, Exprs: []expr.Any{
			ch.load,
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: low, Xor: mark},
			ch.set,
		}})
	}
}

func addElems(c *nftables.Conn, elems []nftElem, tag string) error {
	for _, e := range elems {
		el := nftables.SetElement{Key: e.key, Comment: tag}
		if e.comment != "" {
			el.Comment = e.comment
		}
		if e.verdict != "" {
			kind := expr.VerdictGoto
			if e.jump {
				kind = expr.VerdictJump
			}
			el.VerdictData = &expr.Verdict{Kind: kind, Chain: e.verdict}
		}
		if err := c.SetAddElements(e.set.object(), []nftables.SetElement{el}); err != nil {
			return fmt.Errorf("nftables: element of %s: %w", e.set.name, err)
		}
	}
	return nil
}

// ensureBase queues the node-wide tables, sets and base chains with
// their rules.
func ensureBase(c *nftables.Conn) {
	c.AddTable(nftInet)
	c.AddTable(nftBridge)
	for _, s := range append(append([]nftSet{}, inetSets...), bridgeSets...) {
		_ = c.AddSet(s.object(), nil)
	}
	accept := nftables.ChainPolicyAccept
	for _, ch := range []struct {
		chain *nftables.Chain
		rules [][]expr.Any
	}{
		{&nftables.Chain{Name: "forward", Table: nftInet, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}, forwardRules()},
		{&nftables.Chain{Name: "postrouting", Table: nftInet, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}, postroutingRules()},
		{&nftables.Chain{Name: "prerouting", Table: nftInet, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept}, spoofRules(false)},
		{&nftables.Chain{Name: "prerouting", Table: nftBridge, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: &accept}, spoofRules(true)},
		{&nftables.Chain{Name: "zone", Table: nftInet, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept}, zoneRules()},
		{&nftables.Chain{Name: "zonemark", Table: nftInet, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept}, zoneMarkRules()},
	} {
		c.AddChain(ch.chain)
		c.FlushChain(ch.chain)
		for _, r := range ch.rules {
			c.AddRule(&nftables.Rule{Table: ch.chain.Table, Chain: ch.chain, Exprs: r})
		}
	}
}

// baseRuleCount is how many rules each base chain holds (CHECK).
func baseRuleCount() map[string]int {
	return map[string]int{
		"inet/forward":      len(forwardRules()),
		"inet/postrouting":  len(postroutingRules()),
		"inet/prerouting":   len(spoofRules(false)),
		"bridge/prerouting": len(spoofRules(true)),
	}
}

// ensureMasq queues the masquerade chains (created, flushed, refilled).
func ensureMasq(c *nftables.Conn, chains map[string]masqRule) {
	for name, r := range chains {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: nftInet})
		c.FlushChain(ch)
		c.AddRule(&nftables.Rule{Table: nftInet, Chain: ch, Exprs: masqExprs(r)})
	}
}

// Registers: NFT_REG_1 holds the first key part; the next part of a
// concatenation starts at the 32-bit register after it (NFT_REG32_00 is
// the first word of NFT_REG_1).
const (
	reg1 = unix.NFT_REG_1
	// regAfter4 is the register right after a 4-byte value in reg1,
	// regAfter16 after a 16-byte one.
	regAfter4  = unix.NFT_REG32_01
	regAfter16 = unix.NFT_REG32_04
)

func nfproto(f Family) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if f == V6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
	}
}

// etherType matches the frame's protocol in the bridge family.
func etherType(f Family) []expr.Any {
	t := uint16(unix.ETH_P_IP)
	if f == V6 {
		t = unix.ETH_P_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(t)},
	}
}

// addrField is the offset and length of a source or destination address.
func addrField(f Family, src bool) (off, n uint32) {
	switch {
	case f == V4 && src:
		return 12, 4
	case f == V4:
		return 16, 4
	case src:
		return 8, 16
	}
	return 24, 16
}

func loadAddr(f Family, src bool, reg uint32) *expr.Payload {
	off, n := addrField(f, src)
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func regAfter(f Family) uint32 {
	if f == V6 {
		return regAfter16
	}
	return regAfter4
}

func fwdSet(f Family) nftSet {
	if f == V6 {
		return setFwd6
	}
	return setFwd4
}

func forwardRules() [][]expr.Any {
	var out [][]expr.Any
	for _, f := range Families {
		set := fwdSet(f)
		out = append(out, append(nfproto(f),
			loadAddr(f, true, reg1),
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regAfter(f)},
			&expr.Lookup{SourceRegister: reg1, SetName: set.name},
			&expr.Verdict{Kind: expr.VerdictAccept},
		))
		out = append(out, append(nfproto(f),
			loadAddr(f, false, reg1),
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: regAfter(f)},
			&expr.Lookup{SourceRegister: reg1, SetName: set.name},
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		))
	}
	return out
}

func postroutingRules() [][]expr.Any {
	var out [][]expr.Any
	for _, f := range Families {
		set := setMasq4
		if f == V6 {
			set = setMasq6
		}
		out = append(out, append(nfproto(f),
			loadAddr(f, true, reg1),
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regAfter(f)},
			&expr.Lookup{SourceRegister: reg1, SetName: set.name, IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT},
		))
	}
	return out
}

// spoofRules drop packets from a guarded host veth whose source is not
// allowed; bridge: in the bridge table (matched on the ether type).
func spoofRules(bridge bool) [][]expr.Any {
	var out [][]expr.Any
	for _, f := range Families {
		guard, allow := setGuard4, setAllow4
		if f == V6 {
			guard, allow = setGuard6, setAllow6
		}
		r := nfproto(f)
		if bridge {
			r = etherType(f)
		}
		r = append(r,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: guard.name},
		)
		if f == V6 {
			r = append(r, notInNet(f, LinkLocal6)...)
			r = append(r, notInNet(f, Unspecified6)...)
		}
		r = append(r,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			loadAddr(f, true, unix.NFT_REG32_04),
			&expr.Lookup{SourceRegister: reg1, SetName: allow.name, Invert: true},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)
		out = append(out, r)
	}
	return out
}

// zoneRules: packets entering from a bridge with a zone jump to its zone
// chain (before conntrack: raw priority).
func zoneRules() [][]expr.Any {
	return [][]expr.Any{{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, SetName: setZoneJump.name, IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT},
	}}
}

// zoneMarkRules (after conntrack): original-direction packets from a zone
// bridge jump to the network's mark chain; replies whose connection mark
// (upper 16 bits) is a network's jump to its restore chain.
func zoneMarkRules() [][]expr.Any {
	dir := func(d byte) []expr.Any {
		return []expr.Any{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{d}},
		}
	}
	return [][]expr.Any{
		append(dir(0),
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: setMarkJump.name, IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT},
		),
		append(dir(1),
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(zoneMask), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Lookup{SourceRegister: reg1, SetName: setRestoreJump.name, IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT},
		),
	}
}

// notInNet: the source address is outside n.
func notInNet(f Family, n *net.IPNet) []expr.Any {
	_, size := addrField(f, true)
	return []expr.Any{
		loadAddr(f, true, reg1),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: size, Mask: []byte(n.Mask), Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: ipBytes(n.IP.Mask(n.Mask))},
	}
}

// masqExprs is a masquerade chain's rule.
func masqExprs(r masqRule) []expr.Any {
	out := nfproto(r.fam)
	if r.subnet != nil {
		_, size := addrField(r.fam, false)
		mask := []byte(r.subnet.Mask)
		if r.fam == V4 && len(mask) == 16 {
			mask = mask[12:]
		}
		out = append(out,
			loadAddr(r.fam, false, reg1),
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: size, Mask: mask, Xor: make([]byte, size)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: ipBytes(r.subnet.IP.Mask(r.subnet.Mask))},
		)
	}
	if r.oif != "" {
		op := expr.CmpOpEq
		if r.notOif {
			op = expr.CmpOpNeq
		}
		out = append(out,
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Cmp{Op: op, Register: reg1, Data: ifnameBytes(r.oif)},
		)
	}
	return append(out, &expr.Masq{})
}

// elementsOf dumps every set of our tables and returns the elements whose
// comment satisfies match. A missing table has none.
func elementsOf(c *nftables.Conn, match func(comment string) bool) ([]nftElem, error) {
	var out []nftElem
	var errs []error
	for _, sets := range [][]nftSet{inetSets, bridgeSets} {
		t, err := c.ListTableOfFamily(naming.NftTable, sets[0].table().Family)
		if err != nil {
			continue
		}
		existing, err := c.GetSets(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("list sets: %w", err))
			continue
		}
		there := map[string]bool{}
		for _, s := range existing {
			there[s.Name] = true
		}
		for _, s := range sets {
			if !there[s.name] {
				continue
			}
			els, err := c.GetSetElements(s.object())
			if err != nil {
				errs = append(errs, fmt.Errorf("list %s: %w", s.name, err))
				continue
			}
			for _, el := range els {
				if match(el.Comment) {
					out = append(out, nftElem{set: s, key: el.Key, comment: el.Comment})
				}
			}
		}
	}
	return out, errors.Join(errs...)
}

// attachmentElems are the attachment's elements in the kernel: those its
// index element names that carry its tag (a few lookups by key), or,
// without a readable index element, those a dump of every set finds by
// the tag.
func attachmentElems(c *nftables.Conn, a attachment, tag string) ([]nftElem, error) {
	g, err := newElemGetter()
	if err != nil {
		return nil, err
	}
	defer g.Close()
	comment, ok, err := g.comment(setAttach, attachmentKey(a))
	if err != nil {
		return nil, err
	}
	if ok {
		if els, err := indexedElems(g, a, tag, comment); err == nil {
			return els, nil
		}
	}
	return elementsOf(c, func(s string) bool { return naming.NftTagOf(s) == tag })
}

// indexedElems are the elements the index comment names (the index
// element included) that are in the kernel with the attachment's tag.
func indexedElems(g *elemGetter, a attachment, tag, comment string) ([]nftElem, error) {
	t, p, err := parseReceipt(comment)
	if err != nil {
		return nil, err
	}
	if t != tag {
		return nil, fmt.Errorf("index element of %s carries tag %s", tag, t)
	}
	var out []nftElem
	for _, e := range planNft(a.Network, p).elems {
		if e.comment != "" {
			continue // the network's zone elements
		}
		c, ok, err := g.comment(e.set, e.key)
		if err != nil {
			return nil, err
		}
		if ok && c == tag {
			out = append(out, e)
		}
	}
	return append(out, nftElem{set: setAttach, key: attachmentKey(a), comment: comment}), nil
}

func attachmentKey(a attachment) []byte {
	return ifnameBytes(naming.NftAttachmentKey(a.Network, a.ContainerID, a.IfName))
}

// deleteElems queues the deletion of elements (by key).
func deleteElems(c *nftables.Conn, els []nftElem) error {
	for _, e := range els {
		if err := c.SetDeleteElements(e.set.object(), []nftables.SetElement{{Key: e.key}}); err != nil {
			return err
		}
	}
	return nil
}

// Del deletes the attachment's elements (attachmentElems) in one
// transaction.
func (nftBackend) Del(a attachment, _ *teardownConf) error {
	tag := naming.NftTag(a.Network, a.ContainerID, a.IfName)
	err := retryGone(func(c *nftables.Conn) error {
		els, err := attachmentElems(c, a, tag)
		if err != nil || len(els) == 0 {
			return err
		}
		return deleteElems(c, els)
	})
	if err != nil {
		return fmt.Errorf("nftables: delete %s: %w", tag, err)
	}
	return nil
}

// GC deletes the elements of network whose attachment is not in valid;
// with an empty list also the network's masquerade chains.
func (nftBackend) GC(network string, valid map[cniutil.Attachment]bool) error {
	keep := map[string]bool{}
	for at := range valid {
		keep[naming.NftTag(network, at.ContainerID, at.IfName)] = true
	}
	prefix := naming.NftNetworkTag(network)
	zoneTag := naming.NftZoneTag(network)
	err := retryGone(func(c *nftables.Conn) error {
		els, err := elementsOf(c, func(s string) bool {
			return (strings.HasPrefix(s, prefix) && !keep[naming.NftTagOf(s)]) || (len(valid) == 0 && s == zoneTag)
		})
		if err != nil {
			return err
		}
		if err := deleteElems(c, els); err != nil {
			return err
		}
		if len(valid) > 0 {
			return nil
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name == naming.NftTable && (strings.HasPrefix(ch.Name, naming.NftMasqPrefix(network)) ||
				strings.HasPrefix(ch.Name, naming.NftZonePrefix(network))) {
				c.FlushChain(ch)
				c.DelChain(ch)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nftables: gc of %s: %w", network, err)
	}
	return nil
}

// retryGone runs queue (dumps, then queues deletions) and commits it as one
// transaction on a fresh connection. A transaction fails whole with ENOENT
// when something it deletes went away after the dump (a concurrent DEL or
// GC of the same objects): then it dumps again and retries, a few times,
// so teardown stays idempotent under concurrency.
func retryGone(queue func(c *nftables.Conn) error) error {
	var err error
	for range 5 {
		err = func() error {
			c, err := nftConn()
			if err != nil {
				return err
			}
			defer c.CloseLasting()
			if err := queue(c); err != nil {
				return err
			}
			return c.Flush()
		}()
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return err
}

// Check: the base chains hold their rules, the masquerade chains exist,
// and every element of the attachment is there with its tag.
func (nftBackend) Check(a attachment, p *Policy) error {
	plan, tag := planAttachment(a, p)
	c, err := nftConn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	for where, n := range baseRuleCount() {
		fam, name, _ := strings.Cut(where, "/")
		t := nftInet
		if fam == "bridge" {
			t = nftBridge
		}
		rules, err := c.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			return fmt.Errorf("nftables chain %s %s %s: %w", fam, naming.NftTable, name, err)
		}
		if len(rules) != n {
			return fmt.Errorf("nftables chain %s %s %s has %d rules, want %d", fam, naming.NftTable, name, len(rules), n)
		}
	}
	for name := range plan.masq {
		rules, err := c.GetRules(nftInet, &nftables.Chain{Name: name, Table: nftInet})
		if err != nil {
			return fmt.Errorf("nftables masquerade chain %s: %w", name, err)
		}
		if len(rules) != 1 {
			return fmt.Errorf("nftables masquerade chain %s missing or changed (%d rules)", name, len(rules))
		}
	}
	if z := plan.zone; z != nil {
		if _, err := c.ListChain(nftInet, z.zoneChain); err != nil {
			return fmt.Errorf("nftables conntrack zone chain %s missing: %w", z.zoneChain, err)
		}
		for _, name := range []string{z.markChain, z.restoreChain} {
			rules, err := c.GetRules(nftInet, &nftables.Chain{Name: name, Table: nftInet})
			if err != nil {
				return fmt.Errorf("nftables conntrack zone chain %s: %w", name, err)
			}
			if len(rules) != 1 {
				return fmt.Errorf("nftables conntrack zone chain %s missing or changed (%d rules)", name, len(rules))
			}
		}
	}
	g, err := newElemGetter()
	if err != nil {
		return err
	}
	defer g.Close()
	for _, e := range plan.elems {
		if e.set.is(setAttach) {
			continue // the index only speeds up DEL
		}
		want, what := tag, "element"
		if e.comment != "" {
			want, what = e.comment, "conntrack zone element"
		}
		// (A map element's verdict is not compared; its chain is checked
		// above.)
		comment, ok, err := g.comment(e.set, e.key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("nftables %s missing in %s: %x", what, e.set.name, e.key)
		}
		if comment != want {
			return fmt.Errorf("nftables %s in %s: %x belongs to %q, not %s", what, e.set.name, e.key, comment, want)
		}
	}
	return nil
}
