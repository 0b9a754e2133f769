/*
 * A reference Wenu device in C: what docs/devices.md says, with the libraries
 * real firmware uses (libmosquitto for MQTT, OpenSSL for AES-256-GCM and
 * random nonces). It shares no code with Wenu.
 *
 *   cc -O2 -o wenu_device wenu_device.c -lmosquitto -lcrypto
 *
 *   # seal one plaintext with a given nonce and print the envelope in hex
 *   # (how the tests compare it with docs/test-vectors.json):
 *   wenu_device --seal --device D --key-id N --key BASE64 --nonce HEX 'PLAINTEXT'
 *
 *   # send COUNT messages at QoS 1, keeping each until its PUBACK and sending
 *   # what is unacknowledged again after a reconnect:
 *   wenu_device --device D --password P --key-id N --key BASE64 \
 *     [--host H] [--port P] [--cafile CA] [--count N] [--interval-ms MS] [--seq-file F] [--key-file F]
 *
 * It follows the downlink: after every connection it subscribes to its
 * config and commands topics and reports its firmware, boot counter and
 * applied configuration version; it applies a newer configuration version,
 * answers each command once (reboot, sample_now and set_interval are done,
 * others rejected), and takes the new key a rotate_key command carries
 * sealed under the current one: it seals with it from then on, keeps it in
 * --key-file, and confirms once nothing sealed under an older key awaits
 * its PUBACK. Real firmware would parse the downlink's JSON with a parser
 * (cJSON, jsmn); this example reads Wenu's compact JSON by its field names.
 *
 * The readings are made up but predictable: temp-1 (temperature, degC) =
 * 20 + (seq % 10) / 4 and hum-1 (humidity, %RH) = 40 + seq % 7. At the end
 * it prints {"device":...,"sent":...,"acked":...,"unacked":...,"seqs":[first,last]}.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#define VERSION 1
#define HEADER_LEN 17 /* version, key id, nonce */
#define TAG_LEN 16
#define MAX_PLAINTEXT 1024
#define MAX_ENVELOPE (HEADER_LEN + MAX_PLAINTEXT + TAG_LEN)
#define MAX_MESSAGES 10000
#define MAX_KEYS 8
#define MAX_RUN 64 /* command ids remembered, so a redelivered command runs once */
#define FIRMWARE "reference-c/1.0"

struct options {
    const char *device, *password, *key_b64, *nonce_hex, *host, *cafile, *seq_file, *key_file, *plaintext;
    uint32_t key_id;
    int port, count, interval_ms;
    bool seal_only;
};

/* A message kept until its PUBACK (the offline buffer). */
struct message {
    uint64_t seq;
    uint32_t key_id; /* the key it is sealed under */
    unsigned char envelope[MAX_ENVELOPE];
    size_t len;
    int mid;        /* of its latest sending; 0 while not sent on this connection */
    bool acked;
};

static struct {
    pthread_mutex_t lock;
    struct mosquitto *mosq;
    struct message *messages;
    int count;      /* messages made so far */
    int acked;
    char topic[128];
    const char *device, *key_file;
    /* The keys it holds; it seals with the newest. */
    uint32_t key_ids[MAX_KEYS];
    unsigned char keys[MAX_KEYS][32];
    int key_count;
    int64_t config_version;
    char commands_run[MAX_RUN][33];
    int runs;
    /* A rotate_key confirmation waits until nothing sealed under an older key is unacknowledged. */
    uint32_t held_below;
    char held_result[256];
    int results_in_flight[MAX_RUN]; /* mids of results without a PUBACK */
    int result_count;
} state = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void die(const char *what) {
    fprintf(stderr, "wenu_device: %s\n", what);
    exit(2);
}

/* The device's 32-byte key from its base64 form in the fleet file. */
static void decode_key(const char *b64, unsigned char key[32]) {
    unsigned char out[48];
    size_t len = strlen(b64);
    if (len != 44) die("the key must be 44 characters of base64 (32 bytes)");
    if (EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len) < 32) die("the key is not base64");
    memcpy(key, out, 32);
}

static void decode_hex(const char *hex, unsigned char *out, size_t n) {
    if (strlen(hex) != 2 * n) die("wrong hex length");
    for (size_t i = 0; i < n; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) die("not hex");
        out[i] = (unsigned char)byte;
    }
}

/*
 * envelope = version | key id (big-endian) | nonce | ciphertext | tag,
 * AES-256-GCM with AAD = version | key id | device id. Returns its length.
 */
static size_t seal(const char *device_id, uint32_t key_id, const unsigned char key[32],
                   const unsigned char nonce[12], const unsigned char *plaintext, size_t plaintext_len,
                   unsigned char *envelope) {
    unsigned char aad[5 + 64];
    size_t id_len = strlen(device_id);
    if (id_len > 64 || plaintext_len > MAX_PLAINTEXT) die("device id or plaintext too long");
    envelope[0] = VERSION;
    envelope[1] = (unsigned char)(key_id >> 24);
    envelope[2] = (unsigned char)(key_id >> 16);
    envelope[3] = (unsigned char)(key_id >> 8);
    envelope[4] = (unsigned char)key_id;
    memcpy(envelope + 5, nonce, 12);
    memcpy(aad, envelope, 5);
    memcpy(aad + 5, device_id, id_len);

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, total = 0;
    if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)(5 + id_len)) != 1 ||
        EVP_EncryptUpdate(ctx, envelope + HEADER_LEN, &len, plaintext, (int)plaintext_len) != 1)
        die("AES-GCM failed");
    total = len;
    if (EVP_EncryptFinal_ex(ctx, envelope + HEADER_LEN + total, &len) != 1) die("AES-GCM failed");
    total += len;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, envelope + HEADER_LEN + total) != 1)
        die("AES-GCM tag failed");
    EVP_CIPHER_CTX_free(ctx);
    return HEADER_LEN + (size_t)total + TAG_LEN;
}

/* The next sequence number, kept across restarts: written before it is used. */
static uint64_t take_seq(const char *path, uint64_t *next) {
    uint64_t seq = (*next)++;
    if (path) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f) die("cannot write the sequence file");
        fprintf(f, "%" PRIu64 "\n", *next);
        fflush(f);
        fsync(fileno(f));
        fclose(f);
        if (rename(tmp, path) != 0) die("cannot replace the sequence file");
    }
    return seq;
}

static uint64_t load_seq(const char *path) {
    uint64_t next = 1;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f) {
        if (fscanf(f, "%" SCNu64, &next) != 1) next = 1;
        fclose(f);
    }
    return next;
}

/*
 * Called with the lock held. While disconnected libmosquitto still queues
 * the message (and says MOSQ_ERR_NO_CONN); a reconnect sends all again anyway.
 */
static void send_message(struct message *m) {
    int mid = 0;
    mosquitto_publish(state.mosq, &mid, state.topic, (int)m->len, m->envelope, 1, false);
    m->mid = mid;
}

/*
 * Where the value that `at` starts ends, in compact JSON: after its closing
 * quote or bracket, or at the delimiter after a number or literal.
 */
static const char *json_value_end(const char *at) {
    int depth = 0;
    bool in_string = false;
    for (; *at; at++) {
        if (in_string) {
            if (*at == '\\' && at[1]) at++;
            else if (*at == '"' && (in_string = false, depth == 0)) return at + 1;
            continue;
        }
        if (*at == '"') in_string = true;
        else if (*at == '{' || *at == '[') depth++;
        else if ((*at == '}' || *at == ']') && --depth <= 0) return depth < 0 ? at : at + 1;
        else if (*at == ',' && depth == 0) return at;
    }
    return at;
}

/*
 * A top-level field of a compact JSON object, by name: a string's text, or
 * a number's or an object's JSON; NULL if absent or longer than `n`. Nested
 * objects (a configuration) are skipped, so their keys are never taken for
 * the message's own.
 */
static const char *json_field(const char *json, const char *name, char *out, size_t n) {
    size_t name_len = strlen(name);
    const char *at = strchr(json, '{');
    while (at && *at && *at != '}') {
        const char *key = strchr(at, '"');
        if (!key) return NULL;
        const char *value = json_value_end(key) + 1; /* past the key and its colon */
        const char *end = json_value_end(value);
        if ((size_t)(json_value_end(key) - key) == name_len + 2 && !strncmp(key + 1, name, name_len)) {
            bool text = *value == '"';
            size_t len = (size_t)(end - value) - (text ? 2 : 0);
            if (text) value++;
            if (len >= n) return NULL;
            memcpy(out, value, len);
            out[len] = 0;
            return out;
        }
        at = end; /* the comma before the next key, or the closing brace */
    }
    return NULL;
}

static void publish_json(const char *kind, const char *json, bool is_result) {
    char topic[160];
    int mid = 0;
    snprintf(topic, sizeof topic, "wenu/%s/%s", state.device, kind);
    mosquitto_publish(state.mosq, &mid, topic, (int)strlen(json), json, 1, false);
    if (is_result && state.result_count < MAX_RUN) state.results_in_flight[state.result_count++] = mid;
}

static void report(void) {
    char json[160];
    snprintf(json, sizeof json, "{\"firmware\":\"%s\",\"boot\":1,\"config_version\":%" PRId64 "}", FIRMWARE,
             state.config_version);
    publish_json("reported", json, false);
}

static void answer(const char *id, const char *status, const char *detail) {
    char json[256];
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"status\":\"%s\",\"detail\":\"%s\"}", id, status, detail);
    publish_json("results", json, true);
}

/* Saves the current key where the next run finds it (owner-only, replaced atomically). */
static void keep_key(uint32_t key_id, const unsigned char key[32]) {
    if (!state.key_file) return;
    char tmp[4096];
    unsigned char b64[64];
    EVP_EncodeBlock(b64, key, 32);
    snprintf(tmp, sizeof tmp, "%s.tmp", state.key_file);
    FILE *f = fopen(tmp, "w");
    if (!f) die("cannot write the key file");
    fchmod(fileno(f), 0600);
    fprintf(f, "%" PRIu32 " %s\n", key_id, b64);
    fflush(f);
    fsync(fileno(f));
    fclose(f);
    if (rename(tmp, state.key_file) != 0) die("cannot replace the key file");
}

/* Opens a rotate_key's sealed key with the key it names; its new key id, or 0. */
static uint32_t take_key(const char *sealed_hex, uint32_t announced) {
    unsigned char sealed[HEADER_LEN + 36 + TAG_LEN], plaintext[36], aad[5 + 64];
    if (strlen(sealed_hex) != 2 * sizeof sealed) return 0;
    for (size_t i = 0; i < sizeof sealed; i++) {
        unsigned int byte;
        if (sscanf(sealed_hex + 2 * i, "%2x", &byte) != 1) return 0;
        sealed[i] = (unsigned char)byte;
    }
    uint32_t under = (uint32_t)sealed[1] << 24 | (uint32_t)sealed[2] << 16 | (uint32_t)sealed[3] << 8 | sealed[4];
    int k = -1;
    for (int i = 0; i < state.key_count; i++)
        if (state.key_ids[i] == under) k = i;
    if (sealed[0] != VERSION || k < 0) return 0;
    size_t id_len = strlen(state.device);
    memcpy(aad, sealed, 5);
    memcpy(aad + 5, state.device, id_len);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    bool opened = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, state.keys[k], sealed + 5) == 1 &&
                  EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)(5 + id_len)) == 1 &&
                  EVP_DecryptUpdate(ctx, plaintext, &len, sealed + HEADER_LEN, 36) == 1 &&
                  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, sealed + HEADER_LEN + 36) == 1 &&
                  EVP_DecryptFinal_ex(ctx, plaintext + len, &len) == 1;
    EVP_CIPHER_CTX_free(ctx);
    uint32_t key_id =
        (uint32_t)plaintext[0] << 24 | (uint32_t)plaintext[1] << 16 | (uint32_t)plaintext[2] << 8 | plaintext[3];
    if (!opened || key_id != announced || state.key_count == MAX_KEYS) return 0;
    state.key_ids[state.key_count] = key_id;
    memcpy(state.keys[state.key_count], plaintext + 4, 32);
    state.key_count++;
    keep_key(key_id, plaintext + 4);
    return key_id;
}

/* Called with the lock held: sends a held confirmation once nothing older awaits its PUBACK. */
static void release_held(void) {
    if (!state.held_below) return;
    for (int i = 0; i < state.count; i++)
        if (!state.messages[i].acked && state.messages[i].key_id < state.held_below) return;
    publish_json("results", state.held_result, true);
    state.held_below = 0;
}

static void on_command(const char *json) {
    char id[33], name[65], args[1024], key_id[16], sealed[256];
    if (!json_field(json, "id", id, sizeof id) || !json_field(json, "name", name, sizeof name)) return;
    if (!json_field(json, "args", args, sizeof args)) args[0] = 0;
    for (int i = 0; i < state.runs; i++)
        if (!strcmp(state.commands_run[i], id)) return; /* delivered again: run once */
    snprintf(state.commands_run[state.runs++ % MAX_RUN], sizeof state.commands_run[0], "%s", id);
    if (state.runs > MAX_RUN) state.runs = MAX_RUN;
    if (!strcmp(name, "rotate_key")) {
        uint32_t taken = 0;
        if (json_field(args, "key_id", key_id, sizeof key_id) && json_field(args, "sealed", sealed, sizeof sealed))
            taken = take_key(sealed, (uint32_t)strtoul(key_id, NULL, 10));
        if (!taken) {
            answer(id, "failed", "the sealed key did not open under a key this device holds");
            return;
        }
        fprintf(stderr, "took key %" PRIu32 " from the downlink\n", taken);
        snprintf(state.held_result, sizeof state.held_result, "{\"id\":\"%s\",\"status\":\"done\"}", id);
        state.held_below = taken;
        release_held();
    } else if (!strcmp(name, "reboot") || !strcmp(name, "sample_now") || !strcmp(name, "set_interval")) {
        answer(id, "done", "");
    } else {
        answer(id, "rejected", "unknown command");
    }
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *message) {
    (void)mosq;
    (void)obj;
    char json[2048], version[24];
    if (message->payloadlen <= 0 || message->payloadlen >= (int)sizeof json) return;
    memcpy(json, message->payload, (size_t)message->payloadlen);
    json[message->payloadlen] = 0;
    size_t topic_len = strlen(message->topic);
    pthread_mutex_lock(&state.lock);
    if (topic_len > 7 && !strcmp(message->topic + topic_len - 7, "/config")) {
        /* The same version may come twice: apply only a newer one. */
        if (json_field(json, "version", version, sizeof version) && strtoll(version, NULL, 10) > state.config_version) {
            state.config_version = strtoll(version, NULL, 10);
            report();
        }
    } else if (topic_len > 9 && !strcmp(message->topic + topic_len - 9, "/commands")) {
        on_command(json);
    }
    pthread_mutex_unlock(&state.lock);
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    (void)obj;
    if (rc != 0) {
        fprintf(stderr, "connection refused: %s\n", mosquitto_connack_string(rc));
        return;
    }
    pthread_mutex_lock(&state.lock);
    /* A clean session keeps no subscriptions: subscribe again, and report. */
    char config[160], commands[160];
    snprintf(config, sizeof config, "wenu/%s/config", state.device);
    snprintf(commands, sizeof commands, "wenu/%s/commands", state.device);
    mosquitto_subscribe(mosq, NULL, config, 1);
    mosquitto_subscribe(mosq, NULL, commands, 1);
    report();
    /* A new connection: everything unacknowledged goes again, oldest first. */
    for (int i = 0; i < state.count; i++) {
        state.messages[i].mid = 0;
        if (!state.messages[i].acked) send_message(&state.messages[i]);
    }
    pthread_mutex_unlock(&state.lock);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
    (void)mosq;
    (void)obj;
    pthread_mutex_lock(&state.lock);
    for (int i = 0; i < state.result_count; i++) {
        if (state.results_in_flight[i] == mid) {
            state.results_in_flight[i] = state.results_in_flight[--state.result_count];
            break;
        }
    }
    for (int i = 0; i < state.count; i++) {
        struct message *m = &state.messages[i];
        if (m->mid == mid && !m->acked) {
            m->acked = true;
            state.acked++;
            break;
        }
    }
    release_held();
    pthread_mutex_unlock(&state.lock);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The key kept by an earlier run's rotation, if any, replaces the one given. */
static void load_keys(const struct options *o) {
    char b64[64];
    uint32_t key_id = o->key_id;
    const char *key_b64 = o->key_b64;
    FILE *f = o->key_file ? fopen(o->key_file, "r") : NULL;
    if (f) {
        if (fscanf(f, "%" SCNu32 " %63s", &key_id, b64) == 2) key_b64 = b64;
        fclose(f);
    }
    state.key_ids[0] = key_id;
    decode_key(key_b64, state.keys[0]);
    state.key_count = 1;
}

static int run(const struct options *o) {
    state.device = o->device;
    state.key_file = o->key_file;
    load_keys(o);
    if (o->count < 0 || o->count > MAX_MESSAGES) die("--count is 0 to 10000");
    state.messages = calloc((size_t)o->count + 1, sizeof(struct message));
    if (!state.messages) die("out of memory");
    snprintf(state.topic, sizeof state.topic, "wenu/%s/telemetry", o->device);

    mosquitto_lib_init();
    state.mosq = mosquitto_new(o->device, true, NULL);
    if (!state.mosq) die("mosquitto_new failed");
    mosquitto_username_pw_set(state.mosq, o->device, o->password);
    if (o->cafile && mosquitto_tls_set(state.mosq, o->cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS)
        die("cannot use the CA file");
    mosquitto_reconnect_delay_set(state.mosq, 1, 5, false);
    mosquitto_connect_callback_set(state.mosq, on_connect);
    mosquitto_publish_callback_set(state.mosq, on_publish);
    mosquitto_message_callback_set(state.mosq, on_message);
    if (mosquitto_connect_async(state.mosq, o->host, o->port, 30) != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "first connection attempt failed; retrying\n");
    if (mosquitto_loop_start(state.mosq) != MOSQ_ERR_SUCCESS) die("cannot start the MQTT loop");

    uint64_t next = load_seq(o->seq_file), first = 0, last = 0;
    for (int i = 0; i < o->count; i++) {
        uint64_t seq = take_seq(o->seq_file, &next);
        if (i == 0) first = seq;
        last = seq;
        char plaintext[MAX_PLAINTEXT];
        int n = snprintf(plaintext, sizeof plaintext,
                         "{\"seq\":%" PRIu64 ",\"ts\":%" PRId64 ",\"readings\":["
                         "{\"sensor\":\"temp-1\",\"kind\":\"temperature\",\"value\":%.17g,\"unit\":\"degC\"},"
                         "{\"sensor\":\"hum-1\",\"kind\":\"humidity\",\"value\":%.17g,\"unit\":\"%%RH\"}]}",
                         seq, now_ms(), 20.0 + (double)(seq % 10) / 4.0, 40.0 + (double)(seq % 7));
        unsigned char nonce[12];
        if (RAND_bytes(nonce, sizeof nonce) != 1) die("no random nonce");
        pthread_mutex_lock(&state.lock);
        struct message *m = &state.messages[state.count++];
        int newest = state.key_count - 1;
        m->seq = seq;
        m->key_id = state.key_ids[newest];
        m->len = seal(o->device, m->key_id, state.keys[newest], nonce, (const unsigned char *)plaintext, (size_t)n,
                      m->envelope);
        send_message(m);
        pthread_mutex_unlock(&state.lock);
        usleep((useconds_t)o->interval_ms * 1000);
    }

    /* Wait up to 60 s for the last PUBACKs, the results' too. */
    int unacked = 0, answering = 0;
    for (int waited = 0; waited < 600; waited++) {
        pthread_mutex_lock(&state.lock);
        unacked = state.count - state.acked;
        answering = state.result_count + (state.held_below != 0);
        pthread_mutex_unlock(&state.lock);
        if (unacked == 0 && answering == 0) break;
        usleep(100 * 1000);
    }
    mosquitto_disconnect(state.mosq);
    mosquitto_loop_stop(state.mosq, false);
    mosquitto_destroy(state.mosq);
    mosquitto_lib_cleanup();
    printf("{\"device\":\"%s\",\"sent\":%d,\"acked\":%d,\"unacked\":%d,\"seqs\":[%" PRIu64 ",%" PRIu64 "]}\n",
           o->device, o->count, state.acked, unacked, first, last);
    return unacked == 0 ? 0 : 1;
}

static int seal_only(const struct options *o) {
    unsigned char key[32], nonce[12], envelope[MAX_ENVELOPE];
    if (!o->device || !o->key_b64 || !o->nonce_hex || !o->plaintext) die("--seal needs --device, --key, --nonce and a plaintext");
    decode_key(o->key_b64, key);
    decode_hex(o->nonce_hex, nonce, sizeof nonce);
    size_t len = seal(o->device, o->key_id, key, nonce, (const unsigned char *)o->plaintext, strlen(o->plaintext), envelope);
    for (size_t i = 0; i < len; i++) printf("%02x", envelope[i]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    struct options o = {.host = "127.0.0.1", .port = 1883, .count = 10, .interval_ms = 1000, .key_id = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = true;
        if (!strcmp(arg, "--seal")) o.seal_only = true, takes_value = false;
        else if (!value && arg[0] == '-') die("an option lacks its value");
        else if (!strcmp(arg, "--device")) o.device = value;
        else if (!strcmp(arg, "--password")) o.password = value;
        else if (!strcmp(arg, "--key")) o.key_b64 = value;
        else if (!strcmp(arg, "--key-id")) o.key_id = (uint32_t)strtoul(value, NULL, 10);
        else if (!strcmp(arg, "--nonce")) o.nonce_hex = value;
        else if (!strcmp(arg, "--host")) o.host = value;
        else if (!strcmp(arg, "--port")) o.port = atoi(value);
        else if (!strcmp(arg, "--cafile")) o.cafile = value;
        else if (!strcmp(arg, "--count")) o.count = atoi(value);
        else if (!strcmp(arg, "--interval-ms")) o.interval_ms = atoi(value);
        else if (!strcmp(arg, "--seq-file")) o.seq_file = value;
        else if (!strcmp(arg, "--key-file")) o.key_file = value;
        else if (arg[0] != '-') o.plaintext = arg, takes_value = false;
        else die("unknown option (see the comment at the top of wenu_device.c)");
        if (takes_value) i++;
    }
    if (o.seal_only) return seal_only(&o);
    if (!o.device || !o.password || !o.key_b64) die("--device, --password and --key are needed");
    return run(&o);
}
