//! Publishing rules: serials only grow (also across DELETE), target and
//! signature checked, size limit, ETag.

use bytes::Bytes;
use satchel_format::{SigningKey, Target};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serials_only_grow_and_bundles_are_verified() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, "max_bundle_bytes = 65536"));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let t = Target::Host(mac(1));
    let url = format!("/v1/bundles/{t}");

    let (st, _, b) = admin.request("PUT", &url, w.bundle(&t, None, 5)).await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    // Same serial, and rollback: 409.
    let (st, _, b) = admin.request("PUT", &url, w.bundle(&t, None, 5)).await;
    assert_eq!((st, error_code(&b).as_str()), (409, "serial_not_greater"));
    assert_eq!(admin.status("PUT", &url, w.bundle(&t, None, 4)).await, 409);
    // DELETE keeps the highest serial: a lower one is still refused.
    assert_eq!(admin.status("DELETE", &url, Bytes::new()).await, 204);
    assert_eq!(admin.status("DELETE", &url, Bytes::new()).await, 404);
    assert_eq!(admin.status("GET", &url, Bytes::new()).await, 404);
    assert_eq!(admin.status("PUT", &url, w.bundle(&t, None, 3)).await, 409);
    assert_eq!(admin.status("PUT", &url, w.bundle(&t, None, 5)).await, 409);
    assert_eq!(admin.status("PUT", &url, w.bundle(&t, None, 6)).await, 201);

    // Wrong target for the route.
    let other = Target::Host(mac(2));
    let (st, _, b) = admin.request("PUT", &url, w.bundle(&other, None, 10)).await;
    assert_eq!((st, error_code(&b).as_str()), (422, "bundle_refused"));
    // Untrusted signer.
    let mut rogue = World::new();
    rogue.signer = SigningKey::generate();
    let (st, _, _) = admin.request("PUT", &url, rogue.bundle(&t, None, 10)).await;
    assert_eq!(st, 422);
    // Tampered payload.
    let mut bad = w.bundle(&t, None, 10);
    let (header, _) = satchel_format::container::read_header(&bad[..]).expect("header");
    bad[header.payload_offset as usize + 40] ^= 1;
    assert_eq!(admin.status("PUT", &url, bad).await, 422);
    // Not a bundle at all, empty, truncated.
    assert_eq!(
        admin
            .status("PUT", &url, Bytes::from_static(b"hello"))
            .await,
        422
    );
    assert_eq!(admin.status("PUT", &url, Bytes::new()).await, 422);
    let good = w.bundle(&t, None, 10);
    assert_eq!(
        admin
            .status("PUT", &url, good[..good.len() / 2].to_vec())
            .await,
        422
    );
    // Oversize: 413 (declared length), before any verification.
    let big = w.bundle_sized(&t, None, 11, 100 * 1024);
    let (st, _, b) = admin.request("PUT", &url, big).await;
    assert_eq!((st, error_code(&b).as_str()), (413, "too_large"));

    // The last good one is served, with an ETag that If-None-Match honours.
    assert_eq!(admin.status("PUT", &url, good.clone()).await, 201);
    let (st, h, body) = admin.request("GET", &url, Bytes::new()).await;
    assert_eq!(st, 200);
    assert_eq!(body.as_ref(), good.as_slice());
    assert_eq!(h["x-satchel-serial"], "10");
    let etag = h["etag"].to_str().expect("etag").to_string();
    let (st, _, body) = admin
        .try_request("GET", &url, Bytes::new(), &[("if-none-match", &etag)])
        .await
        .expect("conditional");
    assert_eq!((st, body.len()), (304, 0));
    let (st, _, _) = admin
        .try_request("GET", &url, Bytes::new(), &[("if-none-match", "\"other\"")])
        .await
        .expect("conditional");
    assert_eq!(st, 200);

    // The list shows metadata.
    let list = admin.json("GET", "/v1/bundles").await;
    let b = &list["bundles"][0];
    assert_eq!(b["target"], t.to_string());
    assert_eq!(b["serial"], 10);
    assert_eq!(b["published_by"], "admin/alice");
    assert_eq!(b["size"], good.len() as u64);
    assert_eq!(list["highest_serials"][t.to_string()], 10);

    // Restart: the highest serial survives.
    drop(srv);
    let srv = Server::start(&w.config(&data, ""));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    assert_eq!(admin.status("DELETE", &url, Bytes::new()).await, 204);
    let list = admin.json("GET", "/v1/bundles").await;
    assert_eq!(list["bundles"].as_array().expect("b").len(), 0);
    assert_eq!(
        list["highest_serials"][t.to_string()],
        10,
        "kept across DELETE"
    );
    drop(srv);
    let srv = Server::start(&w.config(&data, ""));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    assert_eq!(admin.status("PUT", &url, w.bundle(&t, None, 9)).await, 409);
    assert_eq!(admin.status("PUT", &url, w.bundle(&t, None, 12)).await, 201);
}
