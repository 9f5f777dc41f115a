from factories import build_tree, receive


def test_receive_then_issue(inv):
    build_tree(inv)
    receive(inv, "KL-T01", "TENT", 10)
    r = inv.post("/api/v1/movements", {"warehouse": "KL-T01", "item": "TENT", "kind": "issue",
                                       "quantity": 4})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["on_hand"] == 6
