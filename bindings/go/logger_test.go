package tokenchecker_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

func TestSetLogger(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	record := func(level tokenchecker.LogLevel, msg string) {
		mu.Lock()
		lines = append(lines, level.String()+": "+msg)
		mu.Unlock()
	}
	snapshot := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lines...)
	}
	t.Cleanup(func() { _ = tokenchecker.SetLogger(tokenchecker.LogOff, nil) })

	if err := tokenchecker.SetLogger(tokenchecker.LogInfo, record); err != nil {
		t.Fatal(err)
	}
	newChecker(t)
	got := snapshot()
	if !slicesContain(got, "info: checker created for client test-client") {
		t.Fatalf("no creation message among %q", got)
	}
	for _, l := range got {
		if strings.Contains(l, "test-secret") {
			t.Fatalf("a log line holds the secret: %q", l)
		}
	}

	// A panicking logger neither crashes nor stops checks.
	if err := tokenchecker.SetLogger(tokenchecker.LogDebug, func(tokenchecker.LogLevel, string) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if _, err := newChecker(t).Check(ctx, newToken(t, nil)); err != nil {
		t.Fatal(err)
	}

	// Below the level, or removed: nothing.
	if err := tokenchecker.SetLogger(tokenchecker.LogError, record); err != nil {
		t.Fatal(err)
	}
	n := len(snapshot())
	newChecker(t)
	if err := tokenchecker.SetLogger(tokenchecker.LogOff, nil); err != nil {
		t.Fatal(err)
	}
	newChecker(t)
	if got := snapshot(); len(got) != n {
		t.Fatalf("messages after LogError/LogOff: %q", got[n:])
	}

	if err := tokenchecker.SetLogger(tokenchecker.LogDebug+1, record); !errors.Is(err, tokenchecker.ErrInvalidArgument) {
		t.Fatalf("unknown level: %v", err)
	}
}

func slicesContain(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
