/*
 * Enhancing a recording through the clearvox C ABI.
 *
 *   offline IN.f32 RATE CHANNELS OUT.f32 [CONFIG [RENDER.f32 RENDER_RATE RENDER_CHANNELS]]
 *
 * IN.f32 holds interleaved 32-bit float samples (native byte order) at RATE Hz with
 * CHANNELS channels; OUT.f32 receives the enhanced mono stream, latency included and
 * the tail flushed. CONFIG is a preset name or TOML/JSON text (default: voice-chat).
 * The input is fed in chunks of varying size, as an audio callback would deliver it;
 * the result does not depend on the chunking.
 *
 * RENDER.f32, when given, is what the loudspeaker played during the recording (same
 * layout, RENDER_RATE Hz, RENDER_CHANNELS channels), for the echo canceller of a
 * CONFIG with it on (e.g. {"preset": "voice-chat", "echo": {"enabled": true}}): before
 * each chunk of capture, the render of the same stretch of time is pushed.
 *
 * Build (from the repository root, after `cargo build`):
 *   cc -Iinclude examples/c/offline.c target/debug/libclearvox.a \
 *      -lasound -lgcc_s -lutil -lrt -lpthread -lm -ldl -o offline
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clearvox.h"

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, cv_last_error());
    return 1;
}

/* Reads a whole file of native floats; NULL on failure. */
static float *read_floats(const char *path, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    *count = bytes > 0 ? (size_t)bytes / sizeof(float) : 0;
    float *x = malloc(*count * sizeof(float) + 1);
    if (!x || fread(x, sizeof(float), *count, f) != *count) {
        fprintf(stderr, "error: cannot read %s\n", path);
        free(x);
        x = NULL;
    }
    fclose(f);
    return x;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: offline IN.f32 RATE CHANNELS OUT.f32 "
                        "[CONFIG [RENDER.f32 RENDER_RATE RENDER_CHANNELS]]\n");
        return 2;
    }
    if (cv_abi_version() != CV_ABI_VERSION) {
        fprintf(stderr, "error: this program speaks ABI %u, the library %u\n",
                (unsigned)CV_ABI_VERSION, cv_abi_version());
        return 1;
    }
    unsigned rate = (unsigned)strtoul(argv[2], NULL, 10);
    unsigned channels = (unsigned)strtoul(argv[3], NULL, 10);
    const char *config = argc > 5 ? argv[5] : "voice-chat";

    size_t total = 0;
    float *input = read_floats(argv[1], &total);
    if (!input) {
        return 1;
    }
    size_t frames = total / channels;

    /* The loudspeaker's signal, if given. */
    float *render = NULL;
    size_t render_frames = 0;
    unsigned render_rate = 0, render_channels = 0;
    if (argc > 8) {
        size_t render_total = 0;
        render = read_floats(argv[6], &render_total);
        render_rate = (unsigned)strtoul(argv[7], NULL, 10);
        render_channels = (unsigned)strtoul(argv[8], NULL, 10);
        if (!render || render_channels == 0) {
            free(input);
            free(render);
            return 1;
        }
        render_frames = render_total / render_channels;
    }

    /* A wrong preset is refused with a message, not a crash. */
    CvPipeline *p = NULL;
    if (cv_pipeline_new("no-such-preset", rate, channels, &p) != CV_ERR_CONFIG || p != NULL ||
        strstr(cv_last_error(), "unknown preset") == NULL) {
        fprintf(stderr, "error: a bad preset was not refused properly\n");
        free(input);
        return 1;
    }

    if (cv_pipeline_new(config, rate, channels, &p) != CV_OK) {
        free(input);
        return fail("cv_pipeline_new");
    }
    uint32_t latency = 0, out_rate = 0;
    cv_pipeline_info(p, &latency, &out_rate);
    /* The render format, once, before streaming (it allocates). */
    if (render && cv_pipeline_set_render_format(p, render_rate, render_channels) != CV_OK) {
        return fail("cv_pipeline_set_render_format");
    }

    /* One buffer large enough for any call of up to 4096 frames. */
    size_t capacity = cv_pipeline_output_frames_max(p, 4096);
    float *chunk_out = malloc(capacity * sizeof(float));
    size_t out_cap = frames * 2 + 100000, out_len = 0;
    float *output = malloc(out_cap * sizeof(float));
    if (!chunk_out || !output) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }

    size_t at = 0, speech_events = 0, render_at = 0;
    unsigned seed = 12345;
    while (at < frames) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 8) % 4096;
        if (n > frames - at) n = frames - at;
        if (render) {
            /* What the loudspeaker played up to the end of this chunk, first. */
            size_t until = (size_t)((unsigned long long)(at + n) * render_rate / rate);
            if (until > render_frames) until = render_frames;
            if (until > render_at &&
                cv_pipeline_push_render_f32(p, render + render_at * render_channels,
                                            until - render_at) != CV_OK) {
                return fail("cv_pipeline_push_render_f32");
            }
            if (until > render_at) render_at = until;
        }
        size_t written = 0;
        if (cv_pipeline_process_f32(p, input + at * channels, n, chunk_out, capacity, &written) != CV_OK) {
            return fail("cv_pipeline_process_f32");
        }
        memcpy(output + out_len, chunk_out, written * sizeof(float));
        out_len += written;
        at += n;
        CvVadEvent event;
        uint32_t has_event = 0;
        while (cv_pipeline_next_event(p, &event, &has_event) == CV_OK && has_event) {
            speech_events++;
        }
    }
    size_t written = 0;
    if (cv_pipeline_flush(p, output + out_len, out_cap - out_len, &written) != CV_OK) {
        return fail("cv_pipeline_flush");
    }
    out_len += written;

    FILE *out = fopen(argv[4], "wb");
    if (!out || fwrite(output, sizeof(float), out_len, out) != out_len) {
        perror(argv[4]);
        return 1;
    }
    fclose(out);
    printf("%zu frames in, %zu samples out at %u Hz, latency %u samples, %zu speech events\n",
           frames, out_len, out_rate, latency, speech_events);
    if (render) {
        uint64_t underruns = 0, overruns = 0;
        cv_pipeline_render_stats(p, &underruns, &overruns);
        printf("render: %zu frames pushed, %llu underruns, %llu overruns\n", render_at,
               (unsigned long long)underruns, (unsigned long long)overruns);
    }

    cv_pipeline_free(p);
    free(chunk_out);
    free(output);
    free(input);
    free(render);
    return 0;
}
