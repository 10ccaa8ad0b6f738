// Package config binds a flag.FlagSet to HERALD_* environment variables
// and prints the effective configuration with secrets redacted.
//
// Every flag a.b-c can also be set by HERALD_A_B_C. Precedence: the
// command line, then the environment, then the flag's default. Nothing
// reads flags or the environment after Parse: the values land in each
// package's Config, which is passed by value from there on.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// EnvPrefix starts every environment variable that config reads.
const EnvPrefix = "HERALD_"

// PrintFlag is the flag Parse adds to print the effective configuration.
const PrintFlag = "print-config"

// ErrPrinted is returned by Parse after it printed the configuration
// because of -print-config; main should then exit successfully, as with
// flag.ErrHelp.
var ErrPrinted = errors.New("config: configuration printed")

// EnvName returns the environment variable for flag name: upper-cased,
// with '.' and '-' as '_', after EnvPrefix ("nats.url" -> HERALD_NATS_URL).
func EnvName(name string) string {
	return EnvPrefix + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(name))
}

// Parse parses args (without the program name) into fs, then sets every
// flag not given in args from its environment variable, if set. It adds a
// -print-config flag unless fs has one; when that is true, it prints the
// effective configuration to stdout and returns ErrPrinted (or exits 0 if
// fs was made with flag.ExitOnError).
func Parse(fs *flag.FlagSet, args []string) error {
	return parse(fs, args, os.LookupEnv, os.Stdout)
}

func parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool), stdout io.Writer) error {
	var printCfg *bool
	if fs.Lookup(PrintFlag) == nil {
		printCfg = fs.Bool(PrintFlag, false, "print the effective configuration (secrets redacted) and exit")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			// Never echo the value: it may be a secret.
			errs = append(errs, fmt.Errorf("%s (flag -%s): %w", env, f.Name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if printCfg != nil && *printCfg {
		Print(stdout, fs)
		if fs.ErrorHandling() == flag.ExitOnError {
			os.Exit(0)
		}
		return ErrPrinted
	}
	return nil
}

// Print writes "name=value" for every flag of fs, sorted by name, with the
// values of secret flags (see IsSecret) and passwords in URLs replaced by
// "REDACTED". An empty secret prints as empty, so an unset secret shows.
func Print(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == PrintFlag {
			return
		}
		v := f.Value.String()
		switch {
		case v == "":
		case IsSecret(f.Name):
			v = "REDACTED"
		default:
			v = redactURL(v)
		}
		fmt.Fprintf(w, "%s=%s\n", f.Name, v)
	})
}

// secretWords mark a flag whose value must never be printed.
var secretWords = map[string]bool{
	"password": true, "passwd": true, "secret": true, "token": true,
	"key": true, "apikey": true, "credentials": true, "creds": true,
}

// IsSecret reports whether the value of flag name must be redacted: its
// name has a word (split at '.', '-' and '_') such as password, secret,
// token or key. Public keys and durations such as auth.token-ttl are not
// secret, so names with the word "public" or ending in "ttl" are exempt.
func IsSecret(name string) bool {
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return r == '.' || r == '-' || r == '_'
	})
	secret := false
	for _, w := range words {
		if w == "public" {
			return false
		}
		secret = secret || secretWords[w]
	}
	return secret && words[len(words)-1] != "ttl"
}

// redactURL hides the password of a URL such as redis://:pw@host/0, and
// returns anything else unchanged.
func redactURL(v string) string {
	if !strings.Contains(v, "://") {
		return v
	}
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	if _, ok := u.User.Password(); !ok {
		return v
	}
	u.User = url.UserPassword(u.User.Username(), "REDACTED")
	return u.String()
}
