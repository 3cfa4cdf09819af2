//! The build side: what makes and publishes images. Nothing here calls a task.
//!
//! registry_api  the registry HTTP API (manifests, labels) for loopback registries
//! registry_reuse re-tags in the registry; a release of the same inputs found there
//! build_cache   the inputs key of a release and the vendor/ and public/build/ caches
//! past_assets   the hashed assets of past releases each nginx image carries
//! cache_trim    trimming that cache by age and size (prune)
//! staging       a clean copy of HEAD (or the working tree) to build from
//! platform      --platform checks against the engine's builder
//! multi_platform several platforms under one tag with the docker driver: helper tags, lists
//! summary       the final table of built images
//! tree_lock     one writer per project tree (build-app, set-tag)

pub mod base;
pub mod build_cache;
pub mod cache_trim;
pub mod compose_tag;
pub mod login;
pub mod multi_platform;
pub mod past_assets;
pub mod platform;
pub mod push;
pub mod registry_api;
pub mod registry_reuse;
pub mod release;
pub mod reuse;
pub mod staging;
pub mod summary;
pub mod tools;
pub mod tree_lock;
