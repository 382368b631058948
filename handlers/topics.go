package handlers

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/pushbridge/pushbridge/handlers/transport"
	"github.com/pushbridge/pushbridge/presence"
)

// maxTopics bounds one subscription.
const maxTopics = 32

// topicRule says which topics a client may subscribe to. A topic is a routing key,
// and a subscription narrows a connection to the messages with those keys — so it
// can never reveal anything the connection would not have received anyway. Allowed
// are the keys that can reach a client: those of our bindings (BRIDGE_BINDINGS) and,
// with BRIDGE_INBOUND=broadcast, any key clients send with; a key nothing is
// published with is refused, so that a typo is an error, not a silent connection.
type topicRule struct {
	any     bool
	allowed []string // sorted
}

func newTopicRule(inbound string, consumedKeys []string) *topicRule {
	r := &topicRule{any: inbound == "broadcast", allowed: slices.Clone(consumedKeys)}
	slices.Sort(r.allowed)
	return r
}

// parse checks a subscription a client asks for; an empty list is everything.
func (r *topicRule) parse(keys []string) (*presence.Topics, error) {
	if len(keys) > maxTopics {
		return nil, &Error{Status: http.StatusUnprocessableEntity, Msg: fmt.Sprintf("at most %d topics", maxTopics)}
	}
	for _, k := range keys {
		switch {
		case k == "" || len(k) > transport.MaxRoutingKeyBytes:
			return nil, &Error{Status: http.StatusUnprocessableEntity, Msg: "a topic is a routing key of 1 to 255 bytes"}
		case r.any:
		case !slices.Contains(r.allowed, k):
			return nil, &Error{Status: http.StatusUnprocessableEntity,
				Msg: fmt.Sprintf("topic %q is not a routing key this gateway delivers (it consumes %s)", k, strings.Join(r.allowed, ", "))}
		}
	}
	return presence.NewTopics(keys), nil
}

// query reads ?topics=a,b (every transport): the subscription a connection starts with.
func (r *topicRule) query(req *http.Request) (*presence.Topics, error) {
	v := req.URL.Query().Get("topics")
	if v == "" {
		return nil, nil
	}
	return r.parse(strings.Split(v, ","))
}
