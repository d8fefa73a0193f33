/*
 * cmd-check.c - `tend check` (validate the config, print the waves) and
 * `tend graph` (the dependency graph as text, dot or JSON).  Both read the
 * config file only; neither needs a running instance.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "graph.h"
#include "macros.h"

static const char *cond_name(tend_dep_condition c) {
    switch (c) {
    case TEND_DEP_STARTED: return "started";
    case TEND_DEP_READY: return "ready";
    case TEND_DEP_COMPLETED: return "completed";
    }
    return "?";
}

/* Loads config and graph; prints errors; returns 0 or EXIT_USAGE. */
static int load(const char *path, tend_config **ret_cfg, graph **ret_g) {
    tend_config *cfg;
    int r = cli_load_config(path, &cfg);
    if (r != 0)
        return r;
    char *err = NULL;
    graph *g;
    if (graph_build(cfg->services, cfg->n_services, &g, &err) < 0) {
        cli_error("%s: %s", path, err ? err : "cannot build the dependency graph");
        free(err);
        tend_config_free(cfg);
        return EXIT_USAGE;
    }
    *ret_cfg = cfg;
    *ret_g = g;
    return 0;
}

static void print_waves(const tend_config *cfg, const graph *g, FILE *f) {
    for (int w = 1; w <= g->n_waves; w++) {
        fprintf(f, "wave %d:", w);
        const char *sep = " ";
        for (size_t i = 0; i < cfg->n_services; i++) {
            if (g->wave[i] != w)
                continue;
            fprintf(f, "%s%s", sep, cfg->services[i].name);
            sep = ", ";
        }
        fputc('\n', f);
    }
}

static int parse_file_opt(int argc, char **argv, const char **path, const char **format) {
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': *path = optarg; break;
        case 'F':
            if (!format) {
                cli_error("unknown option --format");
                return EXIT_USAGE;
            }
            *format = optarg;
            break;
        case 'h': return -1;
        default: return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    return 0;
}

static int run_check(int argc, char **argv) {
    const char *path = cli_default_config();
    int r = parse_file_opt(argc, argv, &path, NULL);
    if (r < 0) {
        printf("usage: tend check [-f FILE]\n");
        return EXIT_OK;
    }
    if (r)
        return r;
    tend_config *cfg;
    graph *g;
    if ((r = load(path, &cfg, &g)) != 0)
        return r;
    printf("%s: ok: %zu services in %d waves, %zu queues\n", path, cfg->n_services, g->n_waves,
           cfg->tasks.n_queues);
    print_waves(cfg, g, stdout);
    graph_free(g);
    tend_config_free(cfg);
    return EXIT_OK;
}

static int graph_json(const tend_config *cfg, const graph *g) {
    json_t *root = json_object(), *waves = json_array(), *svcs = json_array();
    for (int w = 1; w <= g->n_waves; w++) {
        json_t *wave = json_array();
        for (size_t i = 0; i < cfg->n_services; i++)
            if (g->wave[i] == w)
                json_array_append_new(wave, json_string(cfg->services[i].name));
        json_array_append_new(waves, wave);
    }
    for (size_t i = 0; i < cfg->n_services; i++) {
        const tend_service_spec *s = &cfg->services[i];
        json_t *deps = json_object();
        for (size_t k = 0; k < s->n_deps; k++)
            json_object_set_new(deps, s->deps[k].name, json_string(cond_name(s->deps[k].condition)));
        json_array_append_new(svcs, json_pack("{s:s, s:i, s:o, s:b, s:b}", "name", s->name, "wave",
                                              g->wave[i], "depends_on", deps, "critical", s->critical,
                                              "oneshot", s->oneshot));
    }
    json_object_set_new(root, "name", json_string(cfg->name));
    json_object_set_new(root, "waves", waves);
    json_object_set_new(root, "services", svcs);
    char *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!out)
        return EXIT_RUNTIME;
    printf("%s\n", out);
    free(out);
    return EXIT_OK;
}

static void graph_dot(const tend_config *cfg, const graph *g) {
    printf("digraph \"%s\" {\n  rankdir=LR;\n  node [shape=box];\n", cfg->name);
    for (int w = 1; w <= g->n_waves; w++) {
        printf("  subgraph cluster_wave%d {\n    label=\"wave %d\";\n", w, w);
        for (size_t i = 0; i < cfg->n_services; i++)
            if (g->wave[i] == w)
                printf("    \"%s\"%s;\n", cfg->services[i].name,
                       cfg->services[i].oneshot ? " [style=dashed]" : "");
        printf("  }\n");
    }
    for (size_t i = 0; i < cfg->n_services; i++) {
        const tend_service_spec *s = &cfg->services[i];
        for (size_t k = 0; k < s->n_deps; k++)
            printf("  \"%s\" -> \"%s\" [label=\"%s\"];\n", s->deps[k].name, s->name,
                   cond_name(s->deps[k].condition));
    }
    printf("}\n");
}

static void graph_text(const tend_config *cfg, const graph *g) {
    for (int w = 1; w <= g->n_waves; w++) {
        printf("wave %d\n", w);
        for (size_t i = 0; i < cfg->n_services; i++) {
            if (g->wave[i] != w)
                continue;
            const tend_service_spec *s = &cfg->services[i];
            printf("  %s%s", s->name, s->oneshot ? " (oneshot)" : "");
            for (size_t k = 0; k < s->n_deps; k++)
                printf("%s%s: %s", k ? ", " : "  <- ", s->deps[k].name, cond_name(s->deps[k].condition));
            printf("\n");
        }
    }
}

static int run_graph(int argc, char **argv) {
    const char *path = cli_default_config(), *format = "text";
    int r = parse_file_opt(argc, argv, &path, &format);
    if (r < 0) {
        printf("usage: tend graph [-f FILE] [--format text|dot|json]\n");
        return EXIT_OK;
    }
    if (r)
        return r;
    if (strcmp(format, "text") != 0 && strcmp(format, "dot") != 0 && strcmp(format, "json") != 0) {
        cli_error("invalid --format \"%s\" (expected text, dot or json)", format);
        return EXIT_USAGE;
    }
    tend_config *cfg;
    graph *g;
    if ((r = load(path, &cfg, &g)) != 0)
        return r;
    if (strcmp(format, "json") == 0)
        r = graph_json(cfg, g);
    else if (strcmp(format, "dot") == 0)
        graph_dot(cfg, g);
    else
        graph_text(cfg, g);
    graph_free(g);
    tend_config_free(cfg);
    return r;
}

const cmd_entry cmd_check_entry = {"check", "[-f FILE]", "validate the config and print the waves", run_check};
const cmd_entry cmd_graph_entry = {"graph", "[-f FILE] [--format text|dot|json]",
                                   "print the dependency graph", run_graph};
