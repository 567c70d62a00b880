package log

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// The verb running in this process (a plugin process runs one verb).
var (
	mu      sync.Mutex
	current = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	did     []field
)

// field is one key of the verb line's what-it-did part: a list (Did) or
// one value (Set).
type field struct {
	key    string
	list   bool
	values []string
}

// L is the running verb's logger, with plugin, verb, network, container
// and ifname attached: use it for debug detail (L().Debug(...)). Before
// Wrap runs a verb it logs errors to stderr.
func L() *slog.Logger {
	mu.Lock()
	defer mu.Unlock()
	return current
}

// Did records objects the running verb acted on, under key, for its line:
// Did("created", "br-red"); Did("reused", "vxlan-100") gives
// created=[br-red] reused=[vxlan-100], objects joined by commas in the
// order recorded. Did(key) with no object shows key=[] (an empty list
// worth saying). Keys keep the order of their first record.
func Did(key string, objects ...string) {
	record(key, true, objects)
}

// Set records one value under key for the verb line, replacing an earlier
// one: Set("backend", "nftables") gives backend=nftables.
func Set(key, value string) {
	record(key, false, []string{value})
}

func record(key string, list bool, values []string) {
	mu.Lock()
	defer mu.Unlock()
	for i := range did {
		if did[i].key == key {
			if list {
				did[i].values = append(did[i].values, values...)
			} else {
				did[i].values = values
			}
			return
		}
	}
	did = append(did, field{key: key, list: list, values: append([]string(nil), values...)})
}

// didAttrs renders the recorded fields as key, value pairs.
func didAttrs() []any {
	mu.Lock()
	defer mu.Unlock()
	var out []any
	for _, f := range did {
		v := strings.Join(f.values, ",")
		if f.list {
			v = "[" + v + "]"
		}
		out = append(out, f.key, v)
	}
	return out
}

// Wrap returns funcs with each verb logged: one line per verb with the
// network, container ID, ifname, duration, what it did (Did, Set) and its
// result or error (a successful STATUS, which runtimes poll, at debug).
// The "log" section of the verb's config chooses where
// (see Config); a config that does not decode logs errors to stderr (the
// plugin itself reports the bad config).
func Wrap(plugin string, funcs skel.CNIFuncs) skel.CNIFuncs {
	wrap := func(verb string, f func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
		if f == nil {
			return nil
		}
		return func(args *skel.CmdArgs) error {
			return runVerb(plugin, verb, args, f)
		}
	}
	return skel.CNIFuncs{
		Add:    wrap("ADD", funcs.Add),
		Del:    wrap("DEL", funcs.Del),
		Check:  wrap("CHECK", funcs.Check),
		GC:     wrap("GC", funcs.GC),
		Status: wrap("STATUS", funcs.Status),
	}
}

func runVerb(plugin, verb string, args *skel.CmdArgs, f func(*skel.CmdArgs) error) (err error) {
	var conf struct {
		Name string `json:"name"`
		Log  Config `json:"log"`
	}
	if json.Unmarshal(args.StdinData, &conf) != nil || conf.Log.Validate() != nil {
		conf.Log = Config{}
	}
	logger, closeLog := New(conf.Log, os.Stderr)
	defer closeLog()
	attrs := []any{"plugin", plugin, "verb", verb, "network", conf.Name}
	if verb != "STATUS" && verb != "GC" {
		attrs = append(attrs, "container", args.ContainerID, "ifname", args.IfName)
	}
	logger = logger.With(attrs...)
	mu.Lock()
	current, did = logger, nil
	mu.Unlock()

	start := time.Now()
	// Logged in a defer so that a panic the caller recovers from (cniutil's
	// PluginMain) still leaves its line.
	defer func() {
		line := append([]any{"duration", time.Since(start).Round(time.Microsecond).String()}, didAttrs()...)
		if p := recover(); p != nil {
			logger.Error(verb+" panicked", append(line, "panic", p)...)
			panic(p)
		}
		if err != nil {
			line = append(line, "error", err.Error())
			var e *types.Error
			if errors.As(err, &e) {
				line = append(line, "code", e.Code)
			}
			logger.Error(verb+" failed", line...)
			return
		}
		level := slog.LevelInfo
		if verb == "STATUS" {
			level = slog.LevelDebug // runtimes poll STATUS every few seconds
		}
		logger.Log(context.Background(), level, verb+" ok", line...)
	}()
	return f(args)
}
