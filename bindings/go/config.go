package tokenchecker

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Config is the checker configuration. Field tags are the library's configuration keys, every
// one of them (the library's README.md documents each); zero values are left out, so the
// library's defaults apply; where zero is a setting that is not the default, fields are
// pointers (Bool, Int). A non-empty RawJSON is passed verbatim, every other field ignored.
type Config struct {
	ClientID         string   `json:"client_id,omitempty"`         // required
	ClientSecret     string   `json:"client_secret,omitempty"`     // required
	ExpectedScopes   []string `json:"expected_scopes,omitempty"`   // required: at least one
	ExpectedAudience string   `json:"expected_audience,omitempty"` // default: ClientID
	AuthURL          string   `json:"auth_url,omitempty"`          // default: https://auth.globus.org
	GroupsURL        string   `json:"groups_url,omitempty"`        // default: https://groups.api.globus.org
	ScopeMatch       string   `json:"scope_match,omitempty"`       // "any" (default) or "all"
	LeewayS          *int     `json:"leeway_s,omitempty"`          // default 3 (seconds, 0–3600)
	FetchGroups      string   `json:"fetch_groups,omitempty"`      // "lazy" (default), "eager" or "never"
	// VerifyCredentials (default true) makes New introspect once to learn whether the
	// server accepts the client credentials.
	VerifyCredentials *bool `json:"verify_credentials,omitempty"`
	ConnectTimeoutMS  int   `json:"connect_timeout_ms,omitempty"` // default 2000
	RequestTimeoutMS  int   `json:"request_timeout_ms,omitempty"` // default 10000
	// CallTimeoutMS (default 15000; 1–600000) bounds every call end to end, in the library:
	// introspection, the dependent-token grant, Groups, retries and Retry-After pauses
	// included; a call still unanswered then fails with TC_AUTH_UNAVAILABLE. The Go context
	// still applies: one that ends first returns ctx.Err() at once (the native call goes on,
	// within this bound, and caches what it learns).
	CallTimeoutMS    int  `json:"call_timeout_ms,omitempty"`
	MaxRetries       *int `json:"max_retries,omitempty"`        // default 1 (0–10)
	MaxTokenBytes    int  `json:"max_token_bytes,omitempty"`    // default 16384
	MaxResponseBytes int  `json:"max_response_bytes,omitempty"` // default 1048576
	// MaxConcurrentRequests (default 256) bounds the requests to Globus Auth/Groups in flight
	// per checker; more wait for a slot (at most RequestTimeoutMS), then fail with
	// TC_AUTH_UNAVAILABLE.
	MaxConcurrentRequests int `json:"max_concurrent_requests,omitempty"`
	// StaleIfErrorS (default 0: off, fail closed) serves a recent positive answer up to this
	// many seconds past its cache lifetime (never past the token's exp) while Globus Auth is
	// unavailable; such results have CacheSource "stale".
	StaleIfErrorS int `json:"stale_if_error_s,omitempty"`
	// RefreshAheadS (default 0: off) refreshes an active token's answer in the background when
	// a hit finds it has less than this many seconds left, so steady users never wait for an
	// expiry (0–3600).
	RefreshAheadS int `json:"refresh_ahead_s,omitempty"`
	// AllowInsecureHTTP (default false) allows http:// AuthURL and GroupsURL on hosts other
	// than loopback: the client secret and users' tokens then travel in clear.
	AllowInsecureHTTP bool `json:"allow_insecure_http,omitempty"`
	// CACerts (default none) are paths of PEM files of CA certificates trusted for AuthURL and
	// GroupsURL besides the built-in roots.
	CACerts     []string     `json:"ca_certs,omitempty"`
	CacheConfig *CacheConfig `json:"cache_config,omitempty"` // default: keep the process-wide cache

	// RawJSON, when set, is the whole configuration document, used verbatim.
	RawJSON string `json:"-"`
}

// CacheConfig is the "cache_config" key: a checker created with one replaces the process-wide
// cache. Extra holds the backend's other keys ("max_entries", "url", "sentinels", …); Backend
// and Timeout, when set, take precedence over them. A zero Timeout is the library default
// (30 s); to ask for 0 put "timeout": 0 in Extra.
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
