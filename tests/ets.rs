//! The ETS model kind (`[engine.model] kind = "ets"`) in the engine, the contest, the checkpoint and the
//! registry: its forecasts are the fitted model's, it is updated by its filter only, it competes with an
//! online model through the champion/challenger contest, and it survives a checkpoint and the registry
//! bit for bit.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use cambio::challenger::ChallengerConfig;
use cambio::checkpoint::format;
use cambio::checkpoint::{CheckpointStore, PairState, Reason, Retention};
use cambio::config::EngineConfig;
use cambio::engine::{Engine, Output, ets_engine_config};
use cambio::model::ets::{self, EtsFit};
use cambio::model::{EtsForm, ModelKind};
use cambio::replay::synth::SplitMix64;
use cambio::replay::{self, Item, ReplayOptions};
use cambio::tick::{Pair, Tick, parse_tick};

fn pair() -> Pair {
    Pair::parse("USDMXN").unwrap()
}

/// One-second ticks whose log mid follows `log_mids`, with a spread of 2 pips.
fn ticks(log_mids: &[f64]) -> Vec<Tick> {
    log_mids
        .iter()
        .enumerate()
        .map(|(i, y)| {
            let mid = y.exp();
            let line = serde_json::json!({
                "pair": "USDMXN",
                "ts": cambio::time::format_ts(1_700_000_000_000_000 + i as i64 * 1_000_000),
                "bid": mid - 1e-4, "ask": mid + 1e-4, "source": "oanda", "seq": i as u64 + 1,
            });
            parse_tick(line.to_string().as_bytes(), Some(pair())).unwrap()
        })
        .collect()
}

/// Log mids with a slope of `slope` per tick that wanders slowly, plus Gaussian noise of `sd`.
fn trending(n: usize, seed: u64, slope: f64, sd: f64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let (mut y, mut b) = (17.0_f64.ln(), slope);
    (0..n)
        .map(|_| {
            b += slope * 0.002 * rng.normal();
            y += b + sd * rng.normal();
            y
        })
        .collect()
}

/// A random walk of log mids.
fn walk(n: usize, seed: u64, sd: f64) -> Vec<f64> {
    trending(n, seed, 0.0, sd)
}

fn base() -> EngineConfig {
    EngineConfig {
        horizons: ["1step", "5step", "1m"].iter().map(|h| h.parse().unwrap()).collect(),
        ..EngineConfig::default()
    }
}

fn run(e: &mut Engine, ticks: &[Tick]) -> Vec<Output> {
    let mut out = Vec::new();
    for t in ticks {
        e.on_tick(t, &mut out);
    }
    out
}

fn forecasts(out: &[Output]) -> Vec<&cambio::forecast::Forecast> {
    out.iter()
        .filter_map(|o| match o {
            Output::Forecast(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// An ETS engine publishes the filter's forecasts: the h-step mean and analytic intervals of the model,
/// updated by its own equations on every accepted tick; its forecasts say `kind: "ets"`.
#[test]
fn an_ets_engine_publishes_the_filtered_models_forecasts() {
    let ys = trending(3_000, 3, 2e-5, 1e-5);
    let fit = ets::fit(&ys[..1_000]).unwrap();
    assert_ne!(fit.form, EtsForm::Ann, "a trending window selects a trend: {fit:?}");
    let cfg = ets_engine_config(&base(), fit.clone());
    assert_eq!(cfg.model.kind, ModelKind::Ets);
    assert!(cfg.model.name.ends_with("-ets"));
    let mut e = Engine::new(pair(), &cfg).unwrap();
    let ts = ticks(&ys[1_000..]);
    let out = run(&mut e, &ts);
    let fcs = forecasts(&out);
    assert_eq!(fcs.len(), ts.len(), "every tick accepted and forecast");
    // Our own filter, tick by tick, from the fitted state.
    let mut model = fit;
    for (f, t) in fcs.iter().zip(&ts) {
        model.update(t.mid_price().unwrap().ln());
        let [m1, lo80, hi80, lo95, hi95] = model.log_interval(1).map(f64::exp);
        let h = &f.horizons[0];
        assert_eq!([h.mean, h.lo80, h.hi80, h.lo95, h.hi95], [m1, lo80, hi80, lo95, hi95]);
        assert_eq!(f.horizons[1].mean, model.log_interval(5)[0].exp());
        assert_eq!(f.model.kind, Some(ModelKind::Ets));
    }
    let json = serde_json::to_value(fcs[0]).unwrap();
    assert_eq!(json["model"]["kind"], "ets");
    // The evaluation scores it as any model: on a trend, far better than the random walk.
    let s = e.summary();
    assert!(s.horizons[0].n > 1_900, "{:?}", s.horizons[0]);
    let ratio = s.horizons[0].rmse_ratio;
    assert!(
        ratio < 0.6,
        "ETS 1-step RMSE over the random walk's on a trend: {ratio}"
    );
}

/// Online engines say nothing of a kind: their forecasts read as before.
#[test]
fn online_forecasts_carry_no_kind() {
    let mut e = Engine::new(pair(), &base()).unwrap();
    let out = run(&mut e, &ticks(&walk(50, 1, 1e-4)));
    let json = serde_json::to_value(forecasts(&out)[0]).unwrap();
    assert!(json["model"].get("kind").is_none(), "{json}");
}

/// An ETS engine without a fit, or with a broken one, is a configuration error, not a panic.
#[test]
fn an_ets_kind_needs_a_valid_fit() {
    let mut cfg = base();
    cfg.model.kind = ModelKind::Ets;
    assert!(Engine::new(pair(), &cfg).is_err());
    let mut fit = ets::fit(&walk(200, 2, 1e-4)).unwrap();
    fit.alpha = 1.5;
    let cfg = ets_engine_config(&base(), fit);
    let err = Engine::new(pair(), &cfg).unwrap_err().to_string();
    assert!(err.contains("alpha"), "{err}");
    // And from TOML: the keys of [engine.model.ets].
    let text = r#"
        [model]
        kind = "ets"
        [model.ets]
        form = "AAdN"
        alpha = 0.9
        beta = 0.01
        phi = 0.95
        sigma2 = 1e-10
        n_obs = 1000
        aicc = -1.0
        initial = { level = 2.83, trend = 0.0 }
        state = { level = 2.84, trend = 1e-6 }
    "#;
    let cfg: EngineConfig = toml::from_str(text).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.model.ets.as_ref().unwrap().form, EtsForm::AadN);
}

/// Encode → decode → the same outputs, bit for bit, for an ETS engine mid-stream; and a registry
/// version of it comes back identical.
#[test]
fn an_ets_engine_round_trips_through_a_checkpoint_and_the_registry() {
    let ys = trending(2_400, 8, 1e-5, 2e-5);
    let cfg = ets_engine_config(&base(), ets::fit(&ys[..800]).unwrap());
    let ts = ticks(&ys[800..]);
    let mut e = Engine::new(pair(), &cfg).unwrap();
    run(&mut e, &ts[..800]);
    let state = PairState {
        engine: e.clone(),
        applied: None,
        contest: None,
    };
    let bytes = format::encode(&state).unwrap();
    let mut restored = format::decode(&bytes).unwrap().engine;
    restored.check_restored().unwrap();
    assert_eq!(
        format::encode(&PairState {
            engine: restored.clone(),
            applied: None,
            contest: None
        })
        .unwrap(),
        bytes
    );
    let dir = std::env::temp_dir().join(format!("cambio-ets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = CheckpointStore::open(&dir.join("cambio.redb"), Retention::default()).unwrap();
    let meta = store.put_state(&state, Reason::Manual, 1).unwrap();
    let mut from_registry = store.get(pair(), meta.version).unwrap().engine;
    assert_eq!(
        from_registry.config(),
        &cfg,
        "the fit is in the version's configuration"
    );
    let a = serde_json::to_string(&run(&mut e, &ts[800..])).unwrap();
    let b = serde_json::to_string(&run(&mut restored, &ts[800..])).unwrap();
    let c = serde_json::to_string(&run(&mut from_registry, &ts[800..])).unwrap();
    assert_eq!(a, b, "restored from a checkpoint");
    assert_eq!(a, c, "loaded from the registry");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A writer the test can read back after the replay took ownership of it.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Replays `ys` with `champion` live and `challenger` in shadow; the promotions, in order, as
/// `(promoted model name, promoted kind)`.
fn contest(ys: &[f64], champion: &EngineConfig, challenger: &EngineConfig) -> Vec<(String, Option<String>)> {
    let sink = Shared::default();
    let opts = ReplayOptions {
        pair: Some(pair()),
        outputs: Some(Box::new(sink.clone())),
        challenger: ChallengerConfig {
            enabled: true,
            engine: Some(challenger.clone()),
            window: 500,
            ..ChallengerConfig::default()
        },
        ..ReplayOptions::default()
    };
    let items = ticks(ys).into_iter().map(Item::Tick);
    let report = replay::run("ets-contest", items, Vec::new(), champion, opts).unwrap();
    assert_eq!(report.ticks, ys.len() as u64);
    let text = String::from_utf8(sink.0.borrow().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "promotion")
        .map(|v| {
            (
                v["promoted_model"]["name"].as_str().unwrap().to_string(),
                v["promoted_model"]["kind"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn fitted(ys: &[f64]) -> EtsFit {
    ets::fit(ys).unwrap().at_window_start()
}

/// On a strong local trend an ETS challenger beats the online champion and is promoted; as champion it
/// keeps its place against the online challenger. On a random walk, where the online model is the random
/// walk, an ETS challenger smoothing with alpha below 1 is not promoted.
#[test]
fn ets_and_online_models_compete_through_the_contest() {
    let online = base();
    let ys = trending(6_000, 21, 2e-5, 1e-5);
    let ets_cfg = ets_engine_config(&online, fitted(&ys[..2_000]));
    let promoted = contest(&ys, &online, &ets_cfg);
    assert_eq!(
        promoted.first(),
        Some(&(ets_cfg.model.name.clone(), Some("ets".to_string()))),
        "the ETS challenger wins on a trend: {promoted:?}"
    );
    assert_eq!(promoted.len(), 1, "and stays: {promoted:?}");
    // ETS champion, online challenger: nothing to promote.
    assert!(
        contest(&ys, &ets_cfg, &online).is_empty(),
        "online never beats ETS on a trend"
    );
    // A random walk: the online model is the random walk (signal weight 0). An ETS fit forced to a
    // heavily smoothed level (alpha 0.3) lags the price and loses.
    let rw = walk(6_000, 22, 1e-4);
    let mut lagging = ets::fit(&rw[..2_000]).unwrap().at_window_start();
    lagging.form = EtsForm::Ann;
    lagging.alpha = 0.3;
    lagging.beta = 0.0;
    lagging.phi = 1.0;
    lagging.initial.trend = 0.0;
    lagging.state = lagging.initial;
    let lagging_cfg = ets_engine_config(&online, lagging);
    assert!(
        contest(&rw, &online, &lagging_cfg).is_empty(),
        "a lagging ETS is not promoted"
    );
    let back = contest(&rw, &lagging_cfg, &online);
    assert_eq!(
        back.first().map(|p| p.1.clone()),
        Some(None),
        "the online challenger replaces a lagging ETS champion: {back:?}"
    );
}
