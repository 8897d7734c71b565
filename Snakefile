# ccdcal: a night of raw CCD/CMOS frames in, masters and calibrated frames out.
#
#   snakemake --cores 8 --config raw_dir=/data/night1 output_dir=/data/night1-cal
#
# DAG: inventory (checkpoint) -> gain and read noise per setup -> master bias
#      -> master dark -> master flat -> calibrate lights (one job per group of lights sharing masters) -> publish -> summary
#      (+ masters filed into library_dir, when set)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/inventory.smk"
include: "workflow/rules/noise.smk"
include: "workflow/rules/masters.smk"
include: "workflow/rules/light.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/library.smk"


rule all:
    default_target: True
    input:
        get_final_outputs,


onsuccess:
    print_summary()
    stop_on_failed_checks()


onerror:
    publish_after_failure()
