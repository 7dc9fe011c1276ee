"""recsys"""
