package tokenchecker_test

import (
	"fmt"
	"strings"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

// The module's constants name the library it is tested with (the checkout's build, from
// Cargo.toml and src/lib.rs): a version bump that forgets version.go fails here.
func TestModuleVersionMatchesLibrary(t *testing.T) {
	if got := tokenchecker.Version(); got != tokenchecker.LibraryVersion {
		t.Fatalf("library %s, but version.go says LibraryVersion %s", got, tokenchecker.LibraryVersion)
	}
	if got := tokenchecker.HeaderABIVersion(); got != tokenchecker.ABIVersion {
		t.Fatalf("tokenchecker.h declares C ABI %d, but version.go says ABIVersion %d", got, tokenchecker.ABIVersion)
	}
	if got := tokenchecker.LibraryABIVersion(); got != tokenchecker.ABIVersion {
		t.Fatalf("the library has C ABI %d, but version.go says ABIVersion %d", got, tokenchecker.ABIVersion)
	}
}

// A header or a library of another generation is refused, with a message naming both.
func TestABIMismatchMessage(t *testing.T) {
	ours, other := uint32(tokenchecker.ABIVersion), uint32(tokenchecker.ABIVersion+1)
	cases := []struct {
		header, library uint32
		want            []string
	}{
		{ours, other, []string{fmt.Sprintf("has C ABI %d", other), fmt.Sprintf("built for ABI %d", ours)}},
		{other, other, []string{fmt.Sprintf("written for C ABI %d", ours), fmt.Sprintf("tokenchecker.h of C ABI %d", other)}},
	}
	for _, c := range cases {
		err := tokenchecker.ABIError(c.header, c.library)
		if err == nil {
			t.Fatalf("header %d, library %d: accepted", c.header, c.library)
		}
		if !strings.Contains(err.Error(), "TC_INVALID_CONFIG") {
			t.Errorf("%v: not TC_INVALID_CONFIG", err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q lacks %q", err.Error(), w)
			}
		}
	}
	if err := tokenchecker.ABIError(ours, ours); err != nil {
		t.Errorf("matching generations refused: %v", err)
	}
}
