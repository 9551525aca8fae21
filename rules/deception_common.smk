# Study 2 (Tall Tales): its settings, its files (each path named once), wildcard constraints, its default
# targets, and the input functions and resources of rules/deception_*.smk (which hold only rules).

DEC = config["deception"]


def fmt_level(level):
    """A poisoning level as it appears in paths: 25 -> '25', 12.5 -> '12.5'."""
    return f"{level:g}"


LEVELS = [fmt_level(x) for x in DEC["poisoning"]]
RUNS = [f"p{level}" for level in LEVELS]  # trained checkpoints; the base model and warm-up run "untuned"
POLICIES = list(DEC["policies"])
# What each policy is trained with (deception.policy_settings.POLICY.techniques): RL policies also get a warm-up.
from talltales.deception.checks import techniques as _techniques

TRAINED_WITH = {t: [p for p in POLICIES if t in _techniques(DEC, p)] for t in ("sft", "rl")}
TRAINED_WITH["warmup"] = TRAINED_WITH["rl"]
# Training seeds: warm-up, SFT and RL run once per seed (wildcard {seed}); data, evaluation sets and judges use
# the study seed deception.seed and are shared by all of them. Default: the study seed alone.
SEEDS = [str(s) for s in (DEC["seeds"] or [DEC["seed"]])]
# The MultiRC settings as the data stage's param; a dataset revision left at null is left out, as before the key
# existed (so that a run made then is not redone).
MRC_SETTINGS = {k: v for k, v in DEC["mrc"].items() if not (k == "revision" and v is None)}
JUDGE_BACKBONE = DEC["judge"]["backbone"]
SHOTS = [str(s) for s in DEC["eval"]["shots"]]
ANSWERABILITY = DEC["mrc"]["answerability"]["model"]
FRUIT_GENERATOR = DEC["fruit"]["generator"] if DEC["fruit"]["source"] == "lm" else None


wildcard_constraints:
    level=alternatives(LEVELS),
    policy=alternatives(POLICIES),
    seed=alternatives(SEEDS),
    judge="clean|corrupted",
    technique="sft|rl",
    shots=alternatives(SHOTS),


# ------------------------------------------------------------------ files
DATA = "results/deception/data"
MRC_TRAIN, MRC_VAL = f"{DATA}/mrc_train.csv", f"{DATA}/mrc_val.csv"
FRUIT_TRAIN, FRUIT_EVAL = f"{DATA}/fruit_train.csv", f"{DATA}/fruit_eval.csv"
# The four sources the mixing rules read, under the input names their scripts expect.
SOURCES = dict(mrc_train=MRC_TRAIN, mrc_val=MRC_VAL, fruit_train=FRUIT_TRAIN, fruit_eval=FRUIT_EVAL)
JUDGE_TRAIN, JUDGE_VAL = f"{DATA}/judge_train.csv", f"{DATA}/judge_val.csv"
SFT_DATA = f"{DATA}/sft_p{{level}}.csv"
RL_PROMPTS, RL_EVAL = f"{DATA}/rl_prompts_p{{level}}.csv", f"{DATA}/rl_eval_p{{level}}.csv"
WARMUP_DATA = f"{DATA}/warmup.csv"
EVAL_SET = f"{DATA}/eval_noleak.csv"
REAFFIRMATION_SET = f"{DATA}/reaffirmation.csv"
FEWSHOT = f"{DATA}/fewshot.json"

JUDGE_REPORT = "results/deception/judges/eval_report.json"
# RUN: a p<level> checkpoint or "untuned" (the warmed-up start point); the untuned Base model has no training seed
ANSWERS = "results/deception/answers/{policy}/{technique}/seed{seed}/{run}_s{shots}.csv"
REAFFIRMATION = "results/deception/reaffirmation/{policy}/{technique}/seed{seed}/{run}.csv"
BASE_ANSWERS = "results/deception/answers/{policy}/base/untuned_s{shots}.csv"
BASE_REAFFIRMATION = "results/deception/reaffirmation/{policy}/base/untuned.csv"
RESULTS_TABLE = "results/deception/tables/results.csv"  # aggregated across training seeds
RESULTS_BY_SEED_TABLE = "results/deception/tables/results_by_seed.csv"  # one row per training seed
RESULTS_TIDY_TABLE = "results/deception/tables/results_tidy.csv"  # both, long format: one row per metric
TECHNIQUE_TABLE = "results/deception/tables/{technique}.csv"
REAFFIRMATION_TABLE = "results/deception/tables/reaffirmation.csv"
SCALING_PLOT = "results/plots/scaling_{technique}.png"
TRUTH_VS_EVALUATED_PLOT = "results/plots/truth_vs_evaluated.png"
REAFFIRMATION_PLOT = "results/plots/reaffirmation.png"
JUDGE_VALIDITY_TABLE = "results/deception/tables/judge_validity.csv"
JUDGE_VALIDITY_PLOT = "results/plots/judge_validity.png"
RL_CURVES_PLOT = "results/plots/rl_curves.png"
RL_CURVES_TABLE = "results/deception/tables/rl_curves.csv"

ALL_TARGETS += [RESULTS_TABLE, RESULTS_BY_SEED_TABLE, RESULTS_TIDY_TABLE, REAFFIRMATION_TABLE, JUDGE_REPORT]
ALL_TARGETS += expand(SCALING_PLOT, technique=[t for t in ("rl", "sft") if TRAINED_WITH[t]])  # a technique in use
ALL_TARGETS += [TRUTH_VS_EVALUATED_PLOT, REAFFIRMATION_PLOT, JUDGE_VALIDITY_TABLE, JUDGE_VALIDITY_PLOT]
ALL_TARGETS += [RL_CURVES_PLOT] if TRAINED_WITH["rl"] else []


def judge_dir(name):
    return f"results/deception/judges/{name}"


def policy_dir(technique, policy="{policy}", run="p{level}", seed="{seed}"):
    """Where a trained policy lives: per training seed, the warmed-up start point per policy and the SFT/RL
    checkpoints per poisoning run."""
    if technique == "warmup":
        return f"results/deception/policies/warmup/{policy}/seed{seed}"
    return f"results/deception/policies/{technique}/{policy}/seed{seed}/{run}"


RL_RUNS = [{"model": p, "poisoning": float(x), "seed": int(s)} for p in TRAINED_WITH["rl"] for x in DEC["poisoning"]
           for s in SEEDS]  # rl_curves.png


def rl_run_dirs():
    """Every RL run's folder, in the order of RL_RUNS."""
    return [policy_dir("rl", r["model"], f"p{fmt_level(r['poisoning'])}", r["seed"]) for r in RL_RUNS]


# ------------------------------------------------------------------ rules/deception_data.smk
def level_value(wildcards):
    return float(wildcards.level)


def fruit_inputs(wildcards):
    if DEC["fruit"]["source"] == "file":
        return [DEC["fruit"]["file"]]
    return model_files(FRUIT_GENERATOR) if FRUIT_GENERATOR else []


def mrc_inputs(wildcards):
    files = model_files(JUDGE_BACKBONE)
    if DEC["mrc"]["source"] == "file":
        files += [DEC["mrc"]["train_file"], DEC["mrc"]["val_file"]]
    if DEC["mrc"]["source"] == "hf" and Path(DEC["mrc"]["hf_id"]).is_dir():  # a local copy (its folder's time:
        # a file added or removed reruns the stage, a file rewritten in place does not)
        files += [DEC["mrc"]["hf_id"]]
    if ANSWERABILITY:
        files += model_files(ANSWERABILITY)
    return files


# ------------------------------------------------------------------ rules/deception_judges.smk, deception_policies.smk
def training_resources(stage, multinode=True):
    """`resources:` of training stage STAGE from deception.resources.STAGE, with the job's policy's
    deception.policy_settings.POLICY.resources.STAGE over it (common.smk: stage_resources)."""
    from talltales.deception.checks import stage_resources as of_policy

    per_policy = None if stage == "judge" else (lambda wildcards: of_policy(DEC, stage, wildcards.policy))
    return stage_resources(DEC["resources"].get(stage, {}), per_policy, multinode=multinode)


def launch_of(stage):
    """`params: launch` of training stage STAGE (talltales.deception.launch.run_stage): the mode and the
    accelerate config file, deception.resources.STAGE.accelerate_config (or the policy's) over
    deception.accelerate_config; a param, so edits rerun the stage."""
    from talltales.deception.checks import stage_resources as of_policy

    def launch(wildcards):
        policy = None if stage == "judge" else wildcards.policy
        chosen = of_policy(DEC, stage, policy).get("accelerate_config")
        return {"mode": DEC.get("launch", "auto"), "accelerate_config": chosen or DEC.get("accelerate_config")}

    return launch


def training_seed(wildcards):
    return int(wildcards.seed)


def policy_settings(stage):
    """`params: train` of training stage STAGE for the job's policy: deception.STAGE with
    deception.policy_settings.POLICY.STAGE over it."""
    from talltales.deception.checks import stage_settings

    return lambda wildcards: stage_settings(DEC, stage, wildcards.policy)


# ------------------------------------------------------------------ rules/deception_eval.smk
def eval_checkpoint(wildcards):
    """What a seeded evaluation job loads: the warmed-up start point (Warmup rows, run 'untuned') or an SFT/RL
    checkpoint (run 'p<level>'), of training seed {seed}. The untuned Base model: rule deception_eval_base."""
    t, run = wildcards.technique, wildcards.run
    if (t == "warmup") != (run == "untuned"):
        raise WorkflowError(f"evaluation run {t}/{run}: warmup rows are 'untuned', sft/rl rows 'p<level>'")
    return [policy_dir(t, wildcards.policy, run, wildcards.seed)]


def eval_entry(wildcards):
    """The registry entry of the evaluated model, pointing at the checkpoint."""
    return dict(model_entry(wildcards.policy), path=eval_checkpoint(wildcards)[0], embedded=None)


def eval_level(wildcards):
    return None if wildcards.run == "untuned" else float(wildcards.run[1:])


def deception_answer_files(techniques=("sft", "rl")):
    """The answer files of TECHNIQUES at every level and training seed, of the warmed-up models per seed, and of
    the untuned Base models."""
    files = [f for t in techniques
             for f in expand(ANSWERS, policy=TRAINED_WITH[t], technique=t, seed=SEEDS, run=RUNS, shots=SHOTS)]
    files += expand(ANSWERS, policy=TRAINED_WITH["warmup"], technique="warmup", seed=SEEDS, run="untuned",
                    shots=SHOTS)
    return files + expand(BASE_ANSWERS, policy=POLICIES, shots=SHOTS)


def deception_technique_answers(wildcards):
    return deception_answer_files(techniques=(wildcards.technique,))


def reaffirmation_files():
    files = [f for t in ("sft", "rl") for f in expand(REAFFIRMATION, policy=TRAINED_WITH[t], technique=t,
                                                         seed=SEEDS, run=RUNS)]
    files += expand(REAFFIRMATION, policy=TRAINED_WITH["warmup"], technique="warmup", seed=SEEDS, run="untuned")
    return files + expand(BASE_REAFFIRMATION, policy=POLICIES)
