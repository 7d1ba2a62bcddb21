// Package procstat reads what Linux's /proc tells of processes and of the
// machine: CPU times, parents, peak memory. The bench reports phonesd's and
// PostgreSQL's cost with it, and benchmarks the server's CPU per
// operation; elsewhere its calls return errors.
package procstat

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of /proc's CPU times: USER_HZ, 100 on Linux.
const clockTicks = 100

// procStat returns the fields of /proc/pid/stat after the command name,
// which may hold spaces and parentheses: fields[0] is the state, [1] the
// parent pid, [11] and [12] user and system time in clock ticks.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return fields, nil
}

// ProcessCPU returns the user and system CPU time pid has used.
func ProcessCPU(pid int) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64)
	sys, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: CPU times %q %q", pid, f[11], f[12])
	}
	return time.Duration(user+sys) * time.Second / clockTicks, nil
}

// ParentPID returns the pid of pid's parent.
func ParentPID(pid int) (int, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// CommandName returns the name of pid's command, empty if unknown.
func CommandName(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Postmaster returns the parent of backend, a PostgreSQL server's backend
// process (pg_backend_pid()), when it can be read here and is PostgreSQL's:
// the postmaster, whose children are the whole server. It returns 0 for a
// server on another machine, where backend is nobody's pid or someone
// else's.
func Postmaster(backend int) int {
	if ppid, err := ParentPID(backend); err == nil && strings.Contains(CommandName(ppid), "postgres") {
		return ppid
	}
	return 0
}

// TreeCPU returns the CPU time of root and its children: a PostgreSQL
// server's postmaster, backends and background processes.
func TreeCPU(root int) time.Duration {
	total, _ := ProcessCPU(root)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := ParentPID(pid); err == nil && ppid == root {
			if cpu, err := ProcessCPU(pid); err == nil {
				total += cpu
			}
		}
	}
	return total
}

// PeakRSS returns the peak resident set size so far (VmHWM) of the process
// pid, in bytes.
func PeakRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// MachineCPU returns the ticks, summed over every CPU, that the machine has
// spent since boot, and of those the ticks spent idle (idle and iowait):
// two readings bracket a span, and how idle it was tells whether the CPUs
// or something else (a single writer, the disk) held the load back.
func MachineCPU() (total, idle int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	for i, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", s, err)
		}
		// guest and guest_nice (the 9th and 10th) are counted in user
		// and nice already.
		if i >= 8 {
			break
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return total, idle, nil
}
