package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/switchboard/switchboard/db"
	"github.com/switchboard/switchboard/internal/auth/password"
	"github.com/switchboard/switchboard/internal/auth/signin"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/web"
)

const operatorsUsage = `Usage:
  switchboard operators add NAME [--admin]     asks for the password
  switchboard operators list
  switchboard operators passwd NAME            asks for the new password
  switchboard operators disable NAME | enable NAME
  switchboard operators role NAME admin|operator
  switchboard operators 2fa NAME none|totp|duo [--require-2fa]
  switchboard operators reset-totp NAME        forgets the enrolled authenticator app
  switchboard operators unlock NAME            ends a lockout after failed sign-ins

Operators are the named people who administer the console (role admin) or
run Controls. The password is read from the terminal, or as one line from
standard input when that is not a terminal (for scripts).`

func (e *cmdEnv) operators(ctx context.Context, args []string) error {
	fs := newFlagSet("operators", operatorsUsage, e.stderr)
	var sf gateway.Store
	addStoreFlags(fs, &sf)
	admin := fs.Bool("admin", false, "with add: give the operator the admin role")
	require2FA := fs.Bool("require-2fa", false, "with 2fa: ask for the second factor when the operator starts a remote connection")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprintln(e.stderr, operatorsUsage)
		return errUsage
	}
	verb, rest := pos[0], pos[1:]
	want := map[string]int{"add": 1, "list": 0, "passwd": 1, "disable": 1, "enable": 1, "role": 2, "2fa": 2, "reset-totp": 1, "unlock": 1}
	n, ok := want[verb]
	if !ok {
		return fmt.Errorf("unknown operators command %q", verb)
	}
	if len(rest) != n {
		return fmt.Errorf("operators %s takes %d argument(s)", verb, n)
	}
	if verb == "add" && (!signin.ValidName(rest[0]) || strings.ContainsAny(rest[0], " /")) {
		return fmt.Errorf("an operator name is 1 to 64 characters without spaces, '/' or control characters")
	}
	var hash string
	if verb == "add" || verb == "passwd" {
		pw, err := e.readPassword(rest[0])
		if err != nil {
			return err
		}
		if hash, err = password.Hash(pw); err != nil {
			return err
		}
	}
	store, closeStore, err := sf.Open(ctx, newLogger(e.stderr, false))
	if err != nil {
		return err
	}
	defer closeStore()
	if verb == "add" {
		role := db.RoleOperator
		if *admin {
			role = db.RoleAdmin
		}
		if _, err := store.AddOperator(ctx, db.Operator{Name: rest[0], PasswordHash: hash, Role: role}); err != nil {
			if errors.Is(err, db.ErrConflict) {
				return fmt.Errorf("an operator called %s exists already", rest[0])
			}
			return err
		}
		fmt.Fprintf(e.stdout, "added operator %s (%s)\n", rest[0], role)
		return nil
	}
	if verb == "list" {
		ops, err := store.Operators(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tSECOND FACTOR\tADDED")
		for _, o := range ops {
			status := "enabled"
			if o.Disabled {
				status = "disabled"
			}
			if o.LockedUntil.After(time.Now()) {
				status += ", locked until " + o.LockedUntil.Local().Format(time.DateTime)
			}
			factor := web.FactorName(o.Factor)
			if o.Require2FA {
				factor += ", required for remote connections"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Name, o.Role, status, factor, o.CreatedAt.Local().Format(time.DateTime))
		}
		return tw.Flush()
	}
	o, err := store.Operator(ctx, rest[0])
	if errors.Is(err, db.ErrNotFound) {
		return fmt.Errorf("no operator called %s", rest[0])
	}
	if err != nil {
		return err
	}
	switch verb {
	case "2fa":
		factor := rest[1]
		if factor == "none" {
			factor = db.FactorNone
		}
		if factor != db.FactorNone && factor != db.FactorTOTP && factor != db.FactorDuo {
			return fmt.Errorf("the second factor must be none, totp or duo")
		}
		require := o.Require2FA // kept unless --require-2fa is given
		if fs.isSet("require-2fa") {
			require = *require2FA
		}
		if err := store.SetSecondFactor(ctx, o.Name, factor, require); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "operator %s: second factor %s\n", o.Name, web.FactorName(factor))
		return nil
	case "reset-totp":
		if err := store.SetTOTP(ctx, o.Name, ""); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "operator %s: authenticator app forgotten; they can enrol a new one on the console's Account page\n", o.Name)
		return nil
	case "unlock":
		if err := store.SigninSucceeded(ctx, o.ID); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "operator %s unlocked\n", o.Name)
		return nil
	}
	role, disabled := o.Role, o.Disabled
	switch verb {
	case "disable":
		disabled = true
	case "enable":
		disabled = false
	case "role":
		role = rest[1]
		if role != db.RoleAdmin && role != db.RoleOperator {
			return fmt.Errorf("role must be admin or operator")
		}
	}
	if err := store.UpdateOperator(ctx, o.Name, hash, role, disabled); err != nil {
		if errors.Is(err, db.ErrLastAdmin) {
			return fmt.Errorf("that would leave no enabled admin")
		}
		return err
	}
	fmt.Fprintf(e.stdout, "updated operator %s\n", o.Name)
	return nil
}

// readPassword asks twice on a terminal, or reads one line from a pipe.
func (e *cmdEnv) readPassword(name string) (string, error) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(e.stderr, "Password for %s: ", name)
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprintf(e.stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		return checkPassword(string(a))
	}
	if e.stdin == nil {
		return "", errors.New("no password given on standard input")
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(pw string) (string, error) {
	if len(pw) < password.MinLength {
		return "", fmt.Errorf("a password must be at least %d characters", password.MinLength)
	}
	return pw, nil
}
