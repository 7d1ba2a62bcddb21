package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// The standard OpenTelemetry variables that turn the export of traces on:
// the traces' own endpoint (a full URL), or the endpoint of all signals, to
// which /v1/traces is added. OTEL_TRACES_EXPORTER=none turns it off.
const (
	tracesEndpointEnv = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	endpointEnv       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	exporterEnv       = "OTEL_TRACES_EXPORTER"
)

// Tracing is phonesd's traces: a tracer, and the W3C trace context that
// requests bring and events carry on.
type Tracing struct {
	// Tracer makes spans; nil when no endpoint is configured, and then
	// phonesd makes none.
	Tracer trace.Tracer
	// Propagator reads and writes the traceparent header, tracing or not,
	// so that a trace passes through a phonesd that does not export.
	Propagator propagation.TextMapPropagator
	provider   *sdktrace.TracerProvider
}

// StartTracing exports spans over OTLP/HTTP to the endpoint the standard
// OTEL_ variables name, read through getenv; without one it returns a
// Tracing without a tracer. version is the service's, for the resource.
func StartTracing(ctx context.Context, getenv func(string) string, version string) (*Tracing, error) {
	t := &Tracing{Propagator: propagation.TraceContext{}}
	endpoint, err := tracesEndpoint(getenv)
	if err != nil || endpoint == "" {
		return t, err
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	t.provider = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "phonesd"),
			attribute.String("service.version", version),
		)),
	)
	t.Tracer = t.provider.Tracer("phonesd")
	return t, nil
}

// CheckTracing returns the error StartTracing would return for the
// variables read through getenv, without starting anything.
func CheckTracing(getenv func(string) string) error {
	_, err := tracesEndpoint(getenv)
	return err
}

// tracesEndpoint returns the URL traces are exported to, "" for none.
func tracesEndpoint(getenv func(string) string) (string, error) {
	if strings.EqualFold(getenv(exporterEnv), "none") {
		return "", nil
	}
	name, endpoint := tracesEndpointEnv, getenv(tracesEndpointEnv)
	if endpoint == "" {
		name, endpoint = endpointEnv, getenv(endpointEnv)
		if endpoint == "" {
			return "", nil
		}
		endpoint = strings.TrimRight(endpoint, "/") + "/v1/traces"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s: want an http:// or https:// URL such as http://127.0.0.1:4318", name)
	}
	return endpoint, nil
}

// Shutdown exports the spans still buffered, within ctx.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}
