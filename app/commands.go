package app

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbridge/pushbridge/app/broker"
	"github.com/pushbridge/pushbridge/presence"
)

// gentoken prints an HS256 token for a user, for trying things out.
func gentoken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pushbridge gentoken", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the user id (the token's sub); required")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	secret := fs.String("jwt-secret", getenv("BRIDGE_JWT_SECRET"), "HS256 secret; env BRIDGE_JWT_SECRET")
	aud := fs.String("aud", getenv("BRIDGE_JWT_AUDIENCE"), "aud claim, for a server that checks it; env BRIDGE_JWT_AUDIENCE")
	iss := fs.String("iss", getenv("BRIDGE_JWT_ISSUER"), "iss claim, for a server that checks it; env BRIDGE_JWT_ISSUER")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *user == "":
		return errors.New("gentoken: -user is required")
	case *secret == "" && getenv("BRIDGE_JWT_JWKS_URL") != "":
		return errors.New("gentoken: cannot sign for BRIDGE_JWT_JWKS_URL: your identity provider holds the private key, so get a token from it (gentoken signs only with BRIDGE_JWT_SECRET)")
	case *secret == "":
		return errors.New("gentoken: set BRIDGE_JWT_SECRET or -jwt-secret")
	case *ttl <= 0:
		return errors.New("gentoken: -ttl must be positive")
	}
	if err := presence.CheckUserID(*user); err != nil {
		return fmt.Errorf("gentoken: -user: %w", err)
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject: *user, Issuer: *iss, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)),
	}
	if *aud != "" {
		claims.Audience = jwt.ClaimStrings{*aud}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(*secret))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// publish sends one message through RabbitMQ (-amqp-url) or the HTTP API (-api).
func publish(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pushbridge publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	key := fs.String("routing-key", "contract", "routing key")
	user := fs.String("user", "", "recipient, sent as header x-user-id (empty: as the body says)")
	data := fs.String("data", "", "message body; - reads standard input")
	amqpURL := fs.String("amqp-url", getenv("AMQP_URL"), "publish through RabbitMQ; env AMQP_URL")
	exchange := fs.String("exchange", cmp.Or(getenv("BRIDGE_EXCHANGE"), "exchange_test"), "exchange; env BRIDGE_EXCHANGE")
	api := fs.String("api", "", "publish through a running server instead, e.g. http://localhost:8080")
	apiKey := fs.String("api-key", getenv("BRIDGE_API_KEY"), "API key for -api; env BRIDGE_API_KEY")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := []byte(*data)
	if *data == "-" {
		var err error
		if body, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20)); err != nil {
			return err
		}
	}
	if len(body) == 0 {
		return errors.New("publish: -data is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if *api != "" {
		return publishHTTP(ctx, *api, *apiKey, *key, *user, body, stdout)
	}
	if *amqpURL == "" {
		return errors.New("publish: set -amqp-url (AMQP_URL) or -api")
	}
	p := broker.Publishing{RoutingKey: *key, Body: body, MessageID: broker.NewID()}
	if *user != "" {
		p.Headers = map[string]any{HeaderUserID: *user}
	}
	if err := broker.PublishOnce(ctx, *amqpURL, *exchange, p); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	fmt.Fprintln(stdout, p.MessageID)
	return nil
}

func publishHTTP(ctx context.Context, base, apiKey, key, user string, body []byte, stdout io.Writer) error {
	data := json.RawMessage(body)
	if !json.Valid(body) {
		b, _ := json.Marshal(string(body))
		data = b
	}
	req, _ := json.Marshal(map[string]any{"routingKey": key, "userId": user, "data": data})
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/api/publish", bytes.NewReader(req))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		r.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("publish: %s: %s", resp.Status, bytes.TrimSpace(out))
	}
	fmt.Fprintln(stdout, string(bytes.TrimSpace(out)))
	return nil
}
