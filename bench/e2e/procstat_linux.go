package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AllowedCPUs are the CPUs this process may run on, in order.
func AllowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	var cpus []int
	for i := range len(set) * 64 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}

// PinProcess pins every thread of this process to cpus (threads started
// later inherit it from the thread that starts them). sched_setaffinity acts
// on one thread, so it walks /proc/self/task until a pass finds no thread it
// has not pinned.
func PinProcess(cpus ...int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	done := make(map[int]bool)
	for range 100 { // bounded: a process does not start threads forever
		tids, err := threads("self")
		if err != nil {
			return err
		}
		fresh := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			fresh = true
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("sched_setaffinity(%d, %v): %w", tid, cpus, err)
			}
			done[tid] = true
		}
		if !fresh {
			return nil
		}
	}
	return errors.New("pin: threads kept appearing")
}

// threads lists the thread ids of process pid ("self" or a number).
func threads(pid string) ([]int, error) {
	ents, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// readProcStats reads the CPU time and context switches of process pid.
//
// CPU is utime + stime from /proc/PID/stat: the whole process, threads that
// exited included, in clock ticks (the kernel scales them from its
// nanosecond runtime; the tick is the resolution). Context switches are the
// sum of voluntary_ctxt_switches and nonvoluntary_ctxt_switches over
// /proc/PID/task/*/status (per thread: threads that exited are not
// counted; Go's runtime seldom ends a thread). RSS and PeakRSS are VmRSS
// and VmHWM of /proc/PID/status.
func readProcStats(pid int) (ProcStats, error) {
	var st ProcStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name is in parentheses and may hold anything; the
	// fields after the last ')' start with field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, errors.New("e2e: unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return st, errors.New("e2e: short /proc stat")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return st, err
	}
	st.CPU = time.Duration(utime+stime) * clockTick
	if st.RSS, st.PeakRSS, err = readRSS(pid); err != nil {
		return st, err
	}
	tids, err := threads(strconv.Itoa(pid))
	if err != nil {
		return st, err
	}
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if err != nil {
			continue // the thread ended
		}
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				st.CtxSwitches += n
			}
		}
	}
	return st, nil
}

// SyscallCounters counts the syscalls of one process with perf tracepoint
// counters (raw_syscalls:sys_enter for the total, syscalls:sys_enter_NAME
// per name): one counter per thread and event, opened with inherit, so
// that threads the counted ones start later are counted too. It needs
// perf_event_open on the process (root, CAP_PERFMON, or
// kernel.perf_event_paranoid ≤ -1) and tracefs.
//
// A thread started between the listing of the process's threads and the
// opening of its creator's counters would be missed: open them while the
// process is idle. While they are open every syscall on the machine takes
// the kernel's tracing slow path (some tens of nanoseconds), both proxies
// alike.
type SyscallCounters struct {
	names []string // "" is the total
	fds   [][]int  // per name, one per thread
}

// SyscallNames are the syscalls counted one by one besides the total: the
// datagram path's (quic-go: sendmsg, recvmmsg; masqroute: sendmmsg,
// recvmmsg; the baseline: write, read), the netpoller's and the thread
// parker's. epoll_pwait includes the pollers' own waits on their epoll
// instances: golang.org/x/sys's EpollWait issues epoll_pwait.
var SyscallNames = []string{"sendmsg", "sendmmsg", "recvmsg", "recvmmsg", "write", "read", "epoll_pwait", "futex", "nanosleep"}

// OpenSyscallCounters starts counting pid's syscalls.
func OpenSyscallCounters(pid int) (_ *SyscallCounters, err error) {
	root := ""
	for _, r := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(r + "/events/raw_syscalls/sys_enter/id"); err == nil {
			root = r
			break
		}
	}
	if root == "" {
		return nil, errors.New("no tracefs with raw_syscalls events")
	}
	tids, err := threads(strconv.Itoa(pid))
	if err != nil {
		return nil, err
	}
	sc := &SyscallCounters{}
	defer func() {
		if err != nil {
			sc.Close()
		}
	}()
	for _, name := range append([]string{""}, SyscallNames...) {
		event := "raw_syscalls/sys_enter"
		if name != "" {
			event = "syscalls/sys_enter_" + name
		}
		b, err := os.ReadFile(root + "/events/" + event + "/id")
		if err != nil {
			if name == "" {
				return nil, err
			}
			continue // a syscall this kernel or architecture lacks
		}
		id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, err
		}
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_TRACEPOINT,
			Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Config: id,
			Bits:   unix.PerfBitInherit,
		}
		var fds []int
		for _, tid := range tids {
			fd, err := unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread ended
			}
			if err != nil {
				for _, fd := range fds {
					unix.Close(fd)
				}
				return nil, fmt.Errorf("perf_event_open(%s): %w", event, err)
			}
			fds = append(fds, fd)
		}
		sc.names = append(sc.names, name)
		sc.fds = append(sc.fds, fds)
	}
	return sc, nil
}

// Read returns the counts so far by name; "" is every syscall.
func (sc *SyscallCounters) Read() (map[string]uint64, error) {
	out := make(map[string]uint64, len(sc.names))
	var buf [8]byte
	for i, name := range sc.names {
		var sum uint64
		for _, fd := range sc.fds[i] {
			if n, err := unix.Read(fd, buf[:]); err != nil || n != 8 {
				return nil, fmt.Errorf("read perf counter: %d bytes, %v", n, err)
			}
			sum += binary.NativeEndian.Uint64(buf[:])
		}
		out[name] = sum
	}
	return out, nil
}

// Close closes the counters.
func (sc *SyscallCounters) Close() error {
	for _, fds := range sc.fds {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	sc.fds = nil
	return nil
}

// MachineBusy is the CPU time every CPU of the machine has spent busy
// since boot (user, nice, system, irq, softirq and steal in /proc/stat's
// "cpu" line): less this benchmark's own processes, what other tenants and
// the hypervisor took.
func MachineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("e2e: unreadable /proc/stat")
	}
	var ticks uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system _ _ irq softirq steal
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// readRSS reads the resident set size of process pid and its peak, in
// bytes, from /proc/PID/status (VmRSS, VmHWM; the kernel writes them in kB).
func readRSS(pid int) (rss, peak uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("e2e: /proc/%d/status %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}
