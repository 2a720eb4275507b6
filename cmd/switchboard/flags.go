package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// flagSet wraps flag.FlagSet with what every command wants: an environment
// variable behind each flag, repeatable flags and positionals anywhere.
type flagSet struct {
	*flag.FlagSet
	summary string
}

func newFlagSet(name, summary string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), summary: summary}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nFlags (each also read from the environment variable shown):\n", summary)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "[]" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s  [%s]\n        %s%s\n", f.Name, envName(f.Name), f.Usage, def)
		})
	}
	return fs
}

func envName(flagName string) string {
	return "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, letting positionals and flags come in any order, and
// fills unset flags from the environment (repeatable flags take a
// comma-separated list). It returns the positionals.
func (fs *flagSet) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		// A file given for a secret (--key-file) on the command line wins
		// over the secret in the environment (SWITCHBOARD_KEY).
		if set[f.Name] || set[f.Name+"-file"] || err != nil {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if _, multi := f.Value.(*listFlag); multi {
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					if e := f.Value.Set(item); e != nil {
						err = fmt.Errorf("%s: %w", envName(f.Name), e)
					}
				}
			}
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("%s: %w", envName(f.Name), e)
		}
	})
	return pos, err
}

// isSet reports whether a flag was given on the command line or the
// environment (after parse).
func (fs *flagSet) isSet(name string) bool {
	if fs.isSetOnCommandLine(name) {
		return true
	}
	_, found := os.LookupEnv(envName(name))
	return found
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// warnSecretFlags warns about each named flag that was given on the command
// line, where every user of the machine can read it (ps, /proc/PID/cmdline);
// safer names the file or environment form to use instead. Values set from
// the environment or a file are not warned about.
func (fs *flagSet) warnSecretFlags(w io.Writer, safer map[string]string) {
	fs.Visit(func(f *flag.Flag) {
		if alt, ok := safer[f.Name]; ok && f.Value.String() != "" {
			fmt.Fprintf(w, "warning: --%s on the command line can be read by every user of this machine (ps, /proc); use %s instead\n", f.Name, alt)
		}
	})
}

// readSecretFile reads a secret (a key, a password) from a file: the first
// line, without its line ending.
func readSecretFile(flagName, path string) (string, error) {
	b, err := readPrivateFile(flagName, path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(b, "\n")
	return strings.TrimRight(line, "\r"), nil
}

// readPrivateFile reads a file of secrets. One that others may read is
// refused, since the point of the file is that they cannot.
func readPrivateFile(flagName, path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagName, err)
	}
	if fi.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
		return "", fmt.Errorf("--%s: %s can be read by other users (mode %04o): chmod 600 %s", flagName, path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flagName, err)
	}
	return string(b), nil
}

// isSetOnCommandLine reports whether a flag was given as an argument (not
// from the environment).
func (fs *flagSet) isSetOnCommandLine(name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
