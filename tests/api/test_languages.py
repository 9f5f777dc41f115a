"""Problems, plan reasons and unmet details in the reader's language (issue 9, item 4): Chinese
when Accept-Language prefers it, English otherwise; what is stored stays the same."""

from __future__ import annotations

from factories import build_network, build_tree, receive

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}


def test_a_problem_answers_in_chinese_when_the_reader_prefers_it(inv, alloc):
    assert alloc.get("/api/v1/allocations/999").get_json()["title"] == "Not found"
    missing = alloc.get("/api/v1/allocations/999", headers=ZH).get_json()
    assert (missing["title"], missing["detail"]) == ("未找到", "没有调拨方案 999")
    english = alloc.get("/api/v1/allocations/999", headers={"Accept-Language": "en-GB,zh;q=0.1"})
    assert english.get_json()["detail"] == "no allocation plan 999"
    bad = inv.post("/api/v1/movements", {"warehouse": "KL", "kind": "receipt"}, headers=ZH)
    body = bad.get_json()
    assert bad.status_code == 422 and body["title"] == "输入无效"
    assert body["errors"]["item"] == ["缺少必填字段。"]
    assert body["detail"].startswith("输入无效：")
    build_tree(inv)
    short = inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "issue",
                                           "quantity": 3}, headers=ZH).get_json()
    assert (short["title"], short["detail"]) == ("库存不足", "KL 的 TENT 可用 0 piece，申请 3")
    assert short["available"] == 0


def test_plan_reasons_and_unmet_details_in_either_language(inv, alloc):
    build_network(inv, alloc)
    receive(inv, "KL", "TENT", 20)
    incident = alloc.as_("commander").post("/api/v1/incidents", {
        "type": "flood", "sites": [{"id": "V1", "warehouse": "KL-T01-V01"}]}).get_json()
    made = alloc.as_("commander").post(
        f"/api/v1/incidents/{incident['id']}/allocations",
        {"demands": [{"site": "V1", "item": "TENT", "quantity": 25}]}, headers=ZH).get_json()
    (shipment,) = made["shipments"]
    assert shipment["reason"].startswith("本县县级库梯队：有 TENT 库存的最近仓库（"), shipment
    (unmet,) = made["unmet"]
    assert unmet["reason"] == "no_stock_in_reach"  # a code, in every language
    assert unmet["detail"].startswith("可达范围内的仓库 TENT 均已用完"), unmet
    english = alloc.get(f"/api/v1/allocations/{made['id']}").get_json()
    assert english["shipments"][0]["reason"].startswith(
        "own county depot tier: nearest depot with TENT in stock (")
    assert english["unmet"][0]["detail"].startswith("every depot in reach is out of TENT")
    refused = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/deliveries",
                                          {"deliveries": [{"shipment": shipment["id"]}]},
                                          headers=ZH).get_json()
    assert refused["detail"] == (f"方案 {made['id']} 状态为已计划；只有已发运的运单才能送达")
