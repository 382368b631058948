package apptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"
)

// apiClient keeps enough idle connections for a few publishing goroutines, so a test
// that publishes thousands of messages through the API does not churn ports.
var apiClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 32},
}

// Response is an HTTP answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Post sends body to url with Content-Type application/json and, when key is not
// empty, Authorization: Bearer key. It returns an error rather than failing the test so
// it can be called from any goroutine.
func Post(url, key string, body []byte) (*Response, error) {
	return PostWith(url, key, body, nil)
}

// PostWith is Post with extra request headers.
func PostWith(url, key string, body []byte, header http.Header) (*Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	return do(req, key)
}

// do sends req with, when key is not empty, Authorization: Bearer key, and reads the
// whole answer.
func do(req *http.Request, key string) (*Response, error) {
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// PublishRequest is the JSON of POST /api/publish whose message body is exactly body:
// a JSON body (other than a string) goes as data itself, anything else as a JSON
// string, which the server sends as its text. userID, when set, becomes x-user-id.
func PublishRequest(key string, body []byte, userID string) ([]byte, error) {
	var data json.RawMessage
	switch {
	case len(body) > 0 && body[0] != '"' && json.Valid(body):
		data = body
	case utf8.Valid(body):
		data, _ = json.Marshal(string(body))
	default:
		return nil, fmt.Errorf("a body that is not UTF-8 cannot go through the publish API")
	}
	return json.Marshal(struct {
		RoutingKey string          `json:"routingKey"`
		UserID     string          `json:"userId,omitempty"`
		Data       json.RawMessage `json:"data"`
	}{key, userID, data})
}

// PublishAPI publishes body through s's POST /api/publish and returns an error unless
// the server answered 202.
func (s *Server) PublishAPI(apiKey, key string, body []byte, userID string) error {
	req, err := PublishRequest(key, body, userID)
	if err != nil {
		return err
	}
	resp, err := Post(s.URL+"/api/publish", apiKey, req)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusAccepted {
		return fmt.Errorf("publish answered %d: %s", resp.Status, resp.Body)
	}
	return nil
}

// Get fetches url with, when key is not empty, Authorization: Bearer key. Like Post
// it returns an error rather than failing the test.
func Get(url, key string) (*Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return do(req, key)
}

// GetJSON fetches url as Get does and decodes a 200 answer into v.
func GetJSON(url, key string, v any) error {
	resp, err := Get(url, key)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("GET %s answered %d: %s", url, resp.Status, resp.Body)
	}
	return json.Unmarshal(resp.Body, v)
}
