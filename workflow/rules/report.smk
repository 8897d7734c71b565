rule summary:
    input:
        inventory=OUT_DIR / "inventory.csv",
        plan=OUT_DIR / "plan.json",
        groups=get_light_group_dirs,
        masters=get_master_reports,
        noise=get_noise_records,
        calibrated=OUT_DIR / "calibrated",
    output:
        qc=OUT_DIR / QC_CSV,
        csv=OUT_DIR / "summary.csv",
        txt=OUT_DIR / "summary.txt",
        summary_page=report(
            REPORT_PAGES / "summary.html",
            caption="../report/summary.rst",
            category="1. Night",
            labels={"page": "summary"},
        ),
        qc_page=report(
            REPORT_PAGES / "qc.html",
            caption="../report/qc.rst",
            category="2. Quality checks",
            labels={"page": "quality checks"},
        ),
        previews=report(
            directory(REPORT_PAGES / "masters"),
            patterns=["{master}.png"],
            caption="../report/master_preview.rst",
            category="3. Masters",
            labels={"figure": "{master} image"},
        ),
        histograms=report(
            directory(REPORT_PAGES / "histograms"),
            patterns=["{master}_histogram.png"],
            caption="../report/master_histogram.rst",
            category="3. Masters",
            labels={"figure": "{master} histogram"},
        ),
        plots=report(
            directory(REPORT_PAGES / "plots"),
            patterns=["{plot}.png"],
            caption="../report/plots.rst",
            category="4. Plots",
            labels={"plot": "{plot}"},
        ),
        lights=report(
            directory(REPORT_PAGES / "lights"),
            patterns=["{light}.jpg"],
            category="5. Lights",
            labels={"light": "{light}"},
        ),
    log:
        LOGS / "summary.log",
    localrule: True
    run:
        from ccdcal.jobs.summary import night_summary_job

        run_logged(
            log[0],
            night_summary_job,
            *input[:2],
            str(OUT_DIR),
            config,
            *output[:3],
            output[3:],
        )
