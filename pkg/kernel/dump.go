package kernel

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Dumps whose size does not grow with the pods of a node. A plain link
// dump (netlink.LinkList) serializes every link of the netns, ~1.5 KB per
// pod's host veth, and a route dump without strict checking every route
// of every table (the library filters afterwards), ~3 routes per host
// veth with IPv6; at 250 pods that is hundreds of KB read and parsed by
// each ADD. These ask the kernel to filter.

// LinksOfKind lists the links of one kind ("bridge", "vxlan", "vrf", …):
// the request carries IFLA_LINKINFO/IFLA_INFO_KIND, as `ip link show type
// KIND`, and the kernel serializes only those links. A kernel that does
// not know the kind (its module not loaded) does not filter; the kind is
// checked here as well.
func LinksOfKind(kind string) ([]netlink.Link, error) {
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.ZeroTerminated(kind))
	return filteredLinks(info, func(l netlink.Link) bool { return l.Type() == kind })
}

// LinksOfMaster lists the ports of the link with index master (IFLA_MASTER
// in the request, as `ip link show master DEV`), the kernel filtering.
func LinksOfMaster(master int) ([]netlink.Link, error) {
	return filteredLinks(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))),
		func(l netlink.Link) bool { return l.Attrs().MasterIndex == master })
}

// filteredLinks is a link dump with filter in the request, keeping the
// links that match; retried while the kernel reports it interrupted, as
// netlinksafe does.
func filteredLinks(filter *nl.RtAttr, match func(netlink.Link) bool) ([]netlink.Link, error) {
	var links []netlink.Link
	var err error
	for range dumpAttempts {
		links, err = dumpLinks(filter, match)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return links, nil
}

func dumpLinks(filter *nl.RtAttr, match func(netlink.Link) bool) ([]netlink.Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(filter)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	var out []netlink.Link
	for _, m := range msgs {
		l, err := netlink.LinkDeserialize(nil, m)
		if err != nil {
			return nil, err
		}
		if match(l) {
			out = append(out, l)
		}
	}
	return out, nil
}

// TableRoutes lists the routes of one routing table (family FAMILY_V4,
// FAMILY_V6 or FAMILY_ALL) on a netlink socket with strict checking on,
// so that the kernel dumps only that table rather than the local table's
// per-device entries too. On a kernel without strict checking the library
// still filters: same answer, bigger dump.
func TableRoutes(family, table int) ([]netlink.Route, error) {
	h, err := netlinksafe.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	_ = h.SetStrictCheck(true)
	return h.RouteListFiltered(family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
}

// LinkAddrs returns the addresses (IFA_LOCAL, else IFA_ADDRESS) of the
// link with index idx, family FAMILY_V4, FAMILY_V6 or FAMILY_ALL, from a
// dump the kernel filters by ifindex (strict checking on; netlink.AddrList
// dumps every address of the netns, one IPv6 link-local per pod's host
// veth, and filters afterwards). On a kernel without strict checking the
// filter here gives the same answer.
func LinkAddrs(idx, family int) ([]net.IP, error) {
	var ips []net.IP
	var err error
	for range dumpAttempts {
		ips, err = linkAddrs(idx, family)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses of link %d: %w", idx, err)
	}
	return ips, nil
}

func linkAddrs(idx, family int) ([]net.IP, error) {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE) // no groups: a plain socket of our own
	if err != nil {
		return nil, err
	}
	defer s.Close()
	_ = unix.SetsockoptInt(s.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
	req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(idx)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, m := range msgs {
		am := nl.DeserializeIfAddrmsg(m)
		if int(am.Index) != idx {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[am.Len():])
		if err != nil {
			return nil, err
		}
		var local, address net.IP
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_LOCAL:
				local = net.IP(a.Value)
			case unix.IFA_ADDRESS:
				address = net.IP(a.Value)
			}
		}
		if local != nil {
			out = append(out, local)
		} else if address != nil {
			out = append(out, address)
		}
	}
	return out, nil
}
