package tokenchecker

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Config is the checker configuration. Field tags are the library's configuration keys
// (README.md of the library documents each); zero values are left out, so the library's
// defaults apply. Fields where zero is a meaningful setting are pointers: use Bool and Int.
//
// When RawJSON is not empty it is passed to the library verbatim and every other field is
// ignored.
type Config struct {
	ClientID         string   `json:"client_id,omitempty"`
	ClientSecret     string   `json:"client_secret,omitempty"`
	ExpectedScopes   []string `json:"expected_scopes,omitempty"`
	ExpectedAudience string   `json:"expected_audience,omitempty"` // default: ClientID
	AuthURL          string   `json:"auth_url,omitempty"`          // default: https://auth.globus.org
	GroupsURL        string   `json:"groups_url,omitempty"`        // default: https://groups.api.globus.org
	ScopeMatch       string   `json:"scope_match,omitempty"`       // "any" (default) or "all"
	LeewayS          *int     `json:"leeway_s,omitempty"`          // default 3
	FetchGroups      string   `json:"fetch_groups,omitempty"`      // "lazy" (default), "eager" or "never"
	// VerifyCredentials (default true) makes New introspect once to learn whether the
	// server accepts the client credentials.
	VerifyCredentials *bool        `json:"verify_credentials,omitempty"`
	ConnectTimeoutMS  int          `json:"connect_timeout_ms,omitempty"`
	RequestTimeoutMS  int          `json:"request_timeout_ms,omitempty"`
	MaxRetries        *int         `json:"max_retries,omitempty"` // default 1
	MaxTokenBytes     int          `json:"max_token_bytes,omitempty"`
	MaxResponseBytes  int          `json:"max_response_bytes,omitempty"`
	CacheConfig       *CacheConfig `json:"cache_config,omitempty"`

	// RawJSON, when set, is the whole configuration document, used verbatim.
	RawJSON string `json:"-"`
}

// CacheConfig is the "cache_config" key. The cache is process-wide: a checker created with a
// CacheConfig replaces the cache every checker of the process uses.
//
// Extra holds the backend's other keys ("max_entries", "url", "sentinels", "near_cache_ttl", …);
// Backend and Timeout, when set, take precedence over the same keys in Extra. A zero Timeout
// means the library default (30 s); to ask for 0 put "timeout": 0 in Extra.
type CacheConfig struct {
	Backend string         // "memory" (default), "redis", "redis_cluster", "redis_sentinel" or "memcached"
	Timeout time.Duration  // upper bound of every entry's lifetime; sent in seconds
	Extra   map[string]any // merged in
}

// MarshalJSON renders the "cache_config" object.
func (c CacheConfig) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(c.Extra)+2)
	for k, v := range c.Extra {
		m[k] = v
	}
	if c.Backend != "" {
		m["backend"] = c.Backend
	}
	if c.Timeout != 0 {
		m["timeout"] = c.Timeout.Seconds()
	}
	return json.Marshal(m)
}

// JSON is the configuration document New passes to the library.
func (c Config) JSON() (string, error) {
	if c.RawJSON != "" {
		return c.RawJSON, nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", &Error{Code: StatusInvalidConfig, Message: "cannot encode the configuration: " + err.Error()}
	}
	return string(b), nil
}

// String describes the configuration without its client secret.
func (c Config) String() string {
	if c.RawJSON != "" {
		return "tokenchecker.Config{RawJSON: <" + strconv.Itoa(len(c.RawJSON)) + " bytes>}"
	}
	if c.ClientSecret != "" {
		c.ClientSecret = "<redacted>"
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "tokenchecker.Config{<unencodable>}"
	}
	return "tokenchecker.Config" + string(b)
}

// GoString keeps %#v from printing the client secret too.
func (c Config) GoString() string { return c.String() }

// Bool returns a pointer to b, for Config.VerifyCredentials.
func Bool(b bool) *bool { return &b }

// Int returns a pointer to i, for Config.LeewayS and Config.MaxRetries.
func Int(i int) *int { return &i }

// SplitScopes splits a scope list separated by spaces and/or commas (as in an environment
// variable) into scopes.
func SplitScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' })
}
