package quiclb

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A reuseport group shared by several processes (instances, each with its
// own server ID) has one steering program, and the kernel numbers the
// group's sockets in the order they joined. So the program's routes must be
// built from the whole group's order, and they change when an instance
// leaves: closing a socket moves the group's last socket into the closed
// slot (net/core/sock_reuseport.c __reuseport_detach_sock).
//
// A leaving instance therefore attaches the program for the order after its
// sockets close (Leave) before it closes them. In between, a slot the new
// program names holds either a socket of the leaving instance or the
// survivor's socket it names: a survivor's socket at a slot below the
// final group size never moves again. So a survivor's packet reaches its own
// transport or a leaving socket, whose stateless reset (its own server ID's
// key) the client ignores; it never reaches a sibling transport that could
// reset it validly.

// A Member is one socket of a reuseport group: the transport of the server
// ID it serves.
type Member struct {
	ServerID  ServerID
	Transport int
}

// Routes builds the steering routes for a group whose sockets, in slot
// order, are members.
func Routes(members []Member) []Route {
	var routes []Route
	byID := make(map[ServerID]int)
	for slot, m := range members {
		i, ok := byID[m.ServerID]
		if !ok {
			i = len(routes)
			byID[m.ServerID] = i
			routes = append(routes, Route{ServerID: m.ServerID})
		}
		r := &routes[i]
		for len(r.Slots) <= m.Transport {
			r.Slots = append(r.Slots, -1)
		}
		r.Slots[m.Transport] = slot
	}
	// A transport with no socket (a gap) steers nowhere: give it a slot
	// past the group, which falls back to the hash.
	for i := range routes {
		for t, s := range routes[i].Slots {
			if s < 0 {
				routes[i].Slots[t] = Fallback
			}
		}
	}
	return routes
}

// Leave returns the group's order after id's sockets close one by one in
// transport order, as the kernel moves the last socket into each closed
// slot.
func Leave(members []Member, id ServerID) []Member {
	out := slices.Clone(members)
	for {
		i := slices.IndexFunc(out, func(m Member) bool { return m.ServerID == id })
		if i < 0 {
			return out
		}
		// The lowest transport first: the order closeGroup closes in.
		for j, m := range out {
			if m.ServerID == id && m.Transport < out[i].Transport {
				i = j
			}
		}
		last := len(out) - 1
		out[i] = out[last]
		out = out[:last]
	}
}

// LeaveOrder is the transports of id in members, in the order Leave
// assumes they close.
func LeaveOrder(members []Member, id ServerID) []int {
	var ts []int
	for _, m := range members {
		if m.ServerID == id {
			ts = append(ts, m.Transport)
		}
	}
	slices.Sort(ts)
	return ts
}

// formatMembers writes a group file: one socket a line, in slot order,
// "server-ID transport".
func formatMembers(members []Member) []byte {
	var b bytes.Buffer
	for _, m := range members {
		fmt.Fprintf(&b, "%s %d\n", m.ServerID, m.Transport)
	}
	return b.Bytes()
}

// parseMembers reads a group file.
func parseMembers(b []byte) ([]Member, error) {
	var members []Member
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sid, t, ok := strings.Cut(line, " ")
		id, err := ParseServerID(sid)
		if err != nil || !ok {
			return nil, fmt.Errorf("group file line %d: %q", n, line)
		}
		tr, err := strconv.Atoi(strings.TrimSpace(t))
		if err != nil || tr < 0 || tr >= MaxTransports {
			return nil, fmt.Errorf("group file line %d: transport %q", n, t)
		}
		members = append(members, Member{ServerID: id, Transport: tr})
	}
	return members, sc.Err()
}
