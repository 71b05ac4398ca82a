/*
 * connect_limits: AWS IoT Core's CONNECT quotas, emulated inside a testbed
 * region's mosquitto, so a fleet's reconnect storm meets the limits it would
 * meet in AWS.
 *
 * AWS IoT Core quotas (AWS General Reference, "AWS IoT Core endpoints and
 * quotas"): "Connect requests per second per account" (default 500,
 * adjustable) and "Connect requests per second per client ID" (1: AWS IoT
 * Core restricts MQTT CONNECT requests from the same account and client ID
 * to one per second).
 *
 * The account quota is a token bucket: `account_connects_per_s` tokens a
 * second, holding at most one second's worth, one token per accepted
 * CONNECT. The client-id rule refuses a CONNECT that comes less than
 * `client_connect_interval_ms` after the previous CONNECT of the same
 * client id (accepted or not: AWS counts requests).
 *
 * A refused CONNECT is answered the way AWS IoT disconnects a throttled
 * client (lifecycle event disconnectReason THROTTLED): the connection is
 * closed after the TLS handshake, without a CONNACK (`refuse close`), or,
 * with `refuse not-authorized`, with CONNACK "not authorized".
 *
 * Every second with any CONNECT it appends one line to `stats_file`:
 *   <unix time> <accepted> <refused by the account quota> <refused by the client-id rule>
 *
 * mosquitto 2.0 calls basic-auth plugins only when the listener does not
 * take the identity from the certificate, so a limited region sets
 * use_identity_as_username false; TLS still requires a client certificate.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

struct slot {
	uint64_t hash; /* 0: empty */
	int64_t last_ms;
};

struct limits {
	mosquitto_plugin_id_t *id;
	double rate;          /* tokens per second; 0 = unlimited */
	double tokens;
	int64_t refilled_ms;
	int64_t interval_ms;  /* per client id; 0 = unlimited */
	int refuse_auth;      /* 1: CONNACK not authorized; 0: close */
	struct slot *slots;
	size_t capacity;      /* a power of two */
	size_t used;
	FILE *stats;
	int64_t second;       /* unix second the counters below belong to */
	long accepted, refused_account, refused_client;
};

static struct limits L;

static int64_t now_ms(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a, 64 bit; 0 is reserved for empty slots. */
static uint64_t hash_id(const char *text)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *text; text++) {
		h ^= (unsigned char)*text;
		h *= 1099511628211ULL;
	}
	return h ? h : 1;
}

static struct slot *find_slot(struct slot *slots, size_t capacity, uint64_t hash)
{
	size_t i = hash & (capacity - 1);
	while (slots[i].hash != 0 && slots[i].hash != hash) {
		i = (i + 1) & (capacity - 1);
	}
	return &slots[i];
}

static int grow(void)
{
	size_t capacity = L.capacity * 2;
	struct slot *slots = calloc(capacity, sizeof(*slots));
	if (!slots) {
		return -1;
	}
	for (size_t i = 0; i < L.capacity; i++) {
		if (L.slots[i].hash) {
			*find_slot(slots, capacity, L.slots[i].hash) = L.slots[i];
		}
	}
	free(L.slots);
	L.slots = slots;
	L.capacity = capacity;
	return 0;
}

static void flush_stats(int64_t second)
{
	if (L.second != 0 && second != L.second && L.stats) {
		if (L.accepted || L.refused_account || L.refused_client) {
			fprintf(L.stats, "%lld %ld %ld %ld\n", (long long)L.second, L.accepted,
				L.refused_account, L.refused_client);
			fflush(L.stats);
		}
		L.accepted = L.refused_account = L.refused_client = 0;
	}
	L.second = second;
}

/* 1 if the client id connected less than interval_ms ago; records this CONNECT. */
static int client_too_soon(const char *client_id, int64_t now)
{
	if (L.interval_ms <= 0 || !client_id) {
		return 0;
	}
	if (L.used * 2 >= L.capacity && grow() != 0) {
		return 0;
	}
	uint64_t hash = hash_id(client_id);
	struct slot *slot = find_slot(L.slots, L.capacity, hash);
	int too_soon = slot->hash != 0 && now - slot->last_ms < L.interval_ms;
	if (slot->hash == 0) {
		slot->hash = hash;
		L.used++;
	}
	slot->last_ms = now;
	return too_soon;
}

static int account_exhausted(int64_t now)
{
	if (L.rate <= 0) {
		return 0;
	}
	L.tokens += (double)(now - L.refilled_ms) * L.rate / 1000.0;
	if (L.tokens > L.rate) {
		L.tokens = L.rate;
	}
	L.refilled_ms = now;
	if (L.tokens < 1.0) {
		return 1;
	}
	L.tokens -= 1.0;
	return 0;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	(void)event;
	(void)userdata;
	int64_t now = now_ms(CLOCK_MONOTONIC);
	flush_stats(now_ms(CLOCK_REALTIME) / 1000);
	const char *client_id = mosquitto_client_id(ed->client);
	if (client_too_soon(client_id, now)) {
		L.refused_client++;
	} else if (account_exhausted(now)) {
		L.refused_account++;
	} else {
		L.accepted++;
		return MOSQ_ERR_SUCCESS;
	}
	return L.refuse_auth ? MOSQ_ERR_AUTH : MOSQ_ERR_UNKNOWN;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	flush_stats(now_ms(CLOCK_REALTIME) / 1000);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) {
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
			  struct mosquitto_opt *options, int option_count)
{
	memset(&L, 0, sizeof(L));
	L.id = identifier;
	L.interval_ms = 1000;
	for (int i = 0; i < option_count; i++) {
		const char *key = options[i].key, *value = options[i].value;
		if (!strcmp(key, "account_connects_per_s")) {
			L.rate = atof(value);
		} else if (!strcmp(key, "client_connect_interval_ms")) {
			L.interval_ms = atoll(value);
		} else if (!strcmp(key, "refuse")) {
			L.refuse_auth = !strcmp(value, "not-authorized");
		} else if (!strcmp(key, "stats_file")) {
			L.stats = fopen(value, "a");
		}
	}
	L.tokens = L.rate;
	L.refilled_ms = now_ms(CLOCK_MONOTONIC);
	L.capacity = 1 << 16;
	L.slots = calloc(L.capacity, sizeof(*L.slots));
	if (!L.slots) {
		return MOSQ_ERR_NOMEM;
	}
	*userdata = NULL;
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			     "connect_limits: %.0f CONNECT/s per account, %lld ms per client id, refuse by %s",
			     L.rate, (long long)L.interval_ms, L.refuse_auth ? "not-authorized" : "close");
	int rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if (rc == MOSQ_ERR_SUCCESS) {
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, NULL);
	}
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	flush_stats(L.second + 1);
	mosquitto_callback_unregister(L.id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(L.id, MOSQ_EVT_TICK, on_tick, NULL);
	if (L.stats) {
		fclose(L.stats);
	}
	free(L.slots);
	return MOSQ_ERR_SUCCESS;
}
