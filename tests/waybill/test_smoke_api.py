from tests.conftest import shipment_body


def test_create_and_get(client, merchant):
    r = client.post("/v1/shipments", json=shipment_body(), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    sid = r.get_json()["id"]
    r = client.get(f"/v1/shipments/{sid}", headers=merchant.headers)
    assert r.status_code == 200
    assert r.get_json()["recipient"]["name"] == "欧***"
