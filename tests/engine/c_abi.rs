//! The live engine through the C ABI, on a real (paced) ALSA device: frames received by
//! callback and by polling equal the offline pipeline's output; nothing is captured
//! before start; statistics are readable.
//!
//! alsa-lib's configuration is per process, so the sessions run one after the other.

use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut};
use std::sync::Mutex;

use crate::support::alsa_fixture::{AlsaFixture, RawAudio};
use crate::support::audio::{load, testdata};
use clearvox::capi::*;
use clearvox::{Config, Pipeline};

fn voice() -> Vec<i16> {
    let (x, rate, ch) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    assert_eq!((rate, ch), (48_000, 1));
    // Two seconds keep the paced runs short.
    x[..96_000]
        .iter()
        .map(|v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect()
}

fn offline(samples: &[i16]) -> Vec<f32> {
    let x: Vec<f32> = samples.iter().map(|v| *v as f32 / 32_768.0).collect();
    let mut p = Pipeline::new(&Config::default(), 48_000, 1).unwrap();
    let mut y = Vec::new();
    p.process(&x, &mut y).unwrap();
    p.flush(&mut y).unwrap();
    y
}

fn options(seconds: f64) -> CvEngineOptions {
    CvEngineOptions {
        input_device: null(),
        output_device: null(),
        input_rate: 48_000,
        input_channels: 1,
        input_format: 1,
        buffer_ms: 0.0,
        duration_s: seconds,
        record_path: null(),
    }
}

unsafe extern "C" fn collect(user: *mut c_void, frame: *const CvFrame) {
    // SAFETY: `user` is the Mutex below and `frame` valid during the call.
    let (out, f) = unsafe { (&*(user as *const Mutex<Vec<f32>>), &*frame) };
    // SAFETY: `samples` holds `len` floats during the call.
    let s = unsafe { std::slice::from_raw_parts(f.samples, f.len) };
    out.lock().unwrap().extend_from_slice(s);
}

fn wait_finished(e: *mut CvEngine) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // SAFETY: a live engine.
    while unsafe { cv_engine_is_finished(e) } == 0 {
        assert!(
            std::time::Instant::now() < until,
            "the engine did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn frames_by_callback_and_by_polling_equal_offline() {
    let samples = voice();
    let expected = offline(&samples);
    let fx = AlsaFixture::paced(&RawAudio::s16(&samples, 1).at_rate(48_000));
    let _env = fx.apply_to_current_process();
    let seconds = samples.len() as f64 / 48_000.0;

    // By callback.
    let got: Mutex<Vec<f32>> = Mutex::new(Vec::new());
    // SAFETY: valid options and out-pointers; `got` outlives the engine's session.
    unsafe {
        let mut e: *mut CvEngine = null_mut();
        let config = CString::new("voice-chat").unwrap();
        assert_eq!(
            cv_engine_new(config.as_ptr(), &options(seconds), &mut e),
            CvStatus::CV_OK
        );
        let mut stats = CvEngineStats::default();
        assert_eq!(cv_engine_stats(e, &mut stats), CvStatus::CV_OK);
        assert_eq!(
            (stats.running, stats.frames_processed),
            (0, 0),
            "nothing before start"
        );
        assert_eq!(
            cv_engine_set_frame_callback(e, Some(collect), &got as *const _ as *mut c_void),
            CvStatus::CV_OK
        );
        assert_eq!(cv_engine_start(e), CvStatus::CV_OK);
        assert_eq!(cv_engine_start(e), CvStatus::CV_ERR_STATE);
        wait_finished(e);
        assert_eq!(cv_engine_stop(e), CvStatus::CV_OK);
        assert_eq!(cv_engine_stats(e, &mut stats), CvStatus::CV_OK);
        assert_eq!(stats.overruns, 0);
        assert!(stats.frames_processed > 150, "{stats:?}");
        cv_engine_free(e);
    }
    assert_eq!(*got.lock().unwrap(), expected, "frames by callback");

    // By polling.
    let mut polled = Vec::new();
    // SAFETY: as above; buffers of the stated capacities.
    unsafe {
        let mut e: *mut CvEngine = null_mut();
        assert_eq!(
            cv_engine_new(null(), &options(seconds), &mut e),
            CvStatus::CV_OK
        );
        assert_eq!(cv_engine_enable_polling(e, 1_000), CvStatus::CV_OK);
        assert_eq!(cv_engine_start(e), CvStatus::CV_OK);
        let mut buf = [0.0f32; 4_800];
        let mut events = [CvVadEvent::default(); 16];
        let mut info = std::mem::zeroed::<CvFrame>();
        let mut has = 0u32;
        let mut stopped = false;
        loop {
            let status = cv_engine_poll_frame(
                e,
                50,
                buf.as_mut_ptr(),
                buf.len(),
                events.as_mut_ptr(),
                events.len(),
                &mut info,
                &mut has,
            );
            assert_eq!(status, CvStatus::CV_OK);
            if has == 1 {
                polled.extend_from_slice(&buf[..info.len]);
                assert_eq!(info.rate, 48_000);
            } else if stopped {
                break;
            } else if cv_engine_is_finished(e) == 1 {
                assert_eq!(cv_engine_stop(e), CvStatus::CV_OK);
                stopped = true;
            }
        }
        cv_engine_free(e);
    }
    assert_eq!(polled, expected, "frames by polling");
}
